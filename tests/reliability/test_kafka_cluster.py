"""A node of a three-node Kafka cluster dies (SIGKILL) while two ``arroyo run`` workers
move a stream from one replicated topic to another, and comes back later: nothing is
lost (at-least-once), and with exactly-once nothing is duplicated either in the
read_committed output. The node killed is once the one leading the most partitions,
once the active controller (the KRaft quorum's leader). The cluster is private to this
module (``compose/brokers.sh up --kafka-nodes 3`` in its own folder and ports), so the
shared broker stays up for the other tests.

Each test prints its figures (messages, kills, lost, duplicated, seconds from the kill
until every partition the dead node led moved on again): ``pytest -s`` shows them."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arroyo import Run, encode
from arroyo.testing import Workers, free_port
from tests.reliability.kafka_groups import (
    committed_offsets,
    read_all,
    wait_for_members,
    workers_config,
)
from tests.reliability.processes import kill_broker

try:
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover - the kafka extra is part of dev
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip(
        "confluent-kafka is not installed (pip install 'arroyo-streams[kafka]')",
        allow_module_level=True,
    )

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
BROKERS = ROOT / "compose" / "brokers.sh"
NODES = 3
PARTITIONS = 6
TOTAL = 20_000  # messages per test
RATE = 2_000  # messages per second the source is fed at (the feed goes on through the kill)
STUCK = 240  # seconds the partitions the dead node led may take to move on


class PrivateCluster:
    """A three-node Kafka cluster of this module only (compose/brokers.sh up
    --kafka-nodes 3 with its own folder and ports from free_port())."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        ports = [free_port() for _ in range(NODES)]
        self.env = {
            **os.environ,
            "ARROYO_BROKERS_DIR": str(folder),
            "ARROYO_BROKERS_MODE": "native",
            "ARROYO_KAFKA_NODE_PORTS": ",".join(map(str, ports)),
            "ARROYO_KAFKA_NODE_CONTROLLER_PORTS": ",".join(str(free_port()) for _ in range(NODES)),
        }
        self.addresses = {node: f"127.0.0.1:{port}" for node, port in enumerate(ports, 1)}
        self.bootstrap = ",".join(self.addresses.values())

    def script(self, *args: str, check: bool = True) -> str:
        """Run compose/brokers.sh ARGS --kafka-nodes 3 kafka: its stdout."""
        done = subprocess.run(
            [str(BROKERS), *args, "--kafka-nodes", str(NODES), "kafka"],
            env=self.env,
            capture_output=True,
            timeout=240,
        )
        assert done.returncode == 0 or not check, done.stderr.decode()[-3000:]
        return done.stdout.decode()

    def up(self) -> None:
        """Start the nodes that do not run and wait until the cluster takes work."""
        exports = self.script("up")
        assert f"export ARROYO_KAFKA={self.bootstrap}\n" in exports, exports

    def down(self) -> None:
        self.script("down")

    def active_controller(self) -> int:
        """The node id of the KRaft quorum's leader, asked of the cluster (the
        ``controller`` of describe_cluster is any broker in KRaft, not this one)."""
        status = self.script("status", check=False)
        found = re.search(r"^kafka: active controller kafka-(\d+)$", status, re.MULTILINE)
        assert found, f"no active controller in the status:\n{status}"
        return int(found.group(1))

    def leaders(self, admin: AdminClient, topic: str) -> dict[int, int]:
        """Partition -> the node leading it."""
        metadata = admin.list_topics(topic, timeout=10).topics[topic]
        return {p: m.leader for p, m in metadata.partitions.items()}

    def kill(self, node: int) -> None:
        """SIGKILL node ``node``; return once it is dead and its port takes nothing."""
        pid = int((self.folder / f"kafka-{node}" / "kafka.pid").read_text().split()[0])
        kill_broker(pid, self.addresses[node], f"kafka-{node}")

    def make_whole(self, admin: AdminClient, within: float = 120) -> None:
        """Every node up, every replica of every partition in sync, and each partition
        led by its preferred replica (the leaders spread over the nodes again)."""
        self.up()
        deadline, lagging = time.monotonic() + within, ["?"]
        while lagging:
            assert time.monotonic() < deadline, f"replicas not in sync in {within} s: {lagging}"
            topics = admin.list_topics(timeout=10).topics
            lagging = [
                f"{name}/{p}"
                for name, topic in topics.items()
                for p, m in topic.partitions.items()
                if sorted(m.isrs) != sorted(m.replicas) or m.leader < 0
            ]
            time.sleep(0.2 if lagging else 0)
        partitions = [
            ck.TopicPartition(name, p)
            for name, topic in admin.list_topics(timeout=10).topics.items()
            for p in topic.partitions
        ]
        # (ELECTION_NOT_NEEDED where a partition is led by its preferred replica already.)
        with contextlib.suppress(ck.KafkaException):
            admin.elect_leaders(ck.ElectionType.PREFERRED, partitions).result(30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """The module's cluster; fails under CI=true (skips elsewhere) without Java."""
    java_home = os.environ.get("JAVA_HOME", "")
    if shutil.which("java") is None and not Path(java_home, "bin", "java").exists():
        message = "java is not installed: cannot run a private Kafka cluster"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert BROKERS.exists(), "compose/brokers.sh is missing"
    running = PrivateCluster(tmp_path_factory.mktemp("cluster"))
    try:
        running.up()
        yield running
    finally:
        running.down()


def feed(bootstrap: str, topic: str, placed: list[tuple[str, int]], done: threading.Event) -> None:
    """Produce TOTAL events over 40 runs at about RATE a second with the idempotent
    producer (a retry after a leader change writes no second copy); (id, partition) of
    each delivered event go to ``placed``."""
    producer = ck.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
    )
    runs = [Run(f"s{i}") for i in range(40)]
    failures: list[Any] = []
    start = time.monotonic()
    try:
        for i in range(TOTAL):
            event = runs[i % 40].event({"i": i})

            def report(err: Any, msg: Any, event_id: str = event.id) -> None:
                if err is None:
                    placed.append((event_id, msg.partition()))
                else:
                    failures.append(err)

            while True:
                try:
                    producer.produce(
                        topic, encode(event), key=event.stream.encode(), on_delivery=report
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            ahead = start + (i + 1) / RATE - time.monotonic()
            producer.poll(max(ahead, 0))
        assert producer.flush(120) == 0, "source records not delivered in 120 s"
        assert not failures, failures[:3]
    finally:
        done.set()


def write_config(folder: Path, bootstrap: str, source: str, results: str, guarantee: str) -> Path:
    """The workers' pipeline. The consumer's session keeps librdkafka's default (45 s): no
    worker is killed here, and a shorter one (6 s, as in test_kafka_kill.py) expels both
    workers from the group while its coordinator moves to another node. The transaction
    timeout is 20 s, more than a node's death takes (6 s, as there, times transactions
    out meanwhile), and less than the default 60 s: it bounds how long a worker waits in
    a transaction call that librdkafka does not end (see arroyo/brokers/kafka/
    transactions.py, _bounded) before it stops and its supervisor starts it again."""
    return workers_config(
        folder / "workers.yaml",
        bootstrap,
        source,
        results,
        publisher={"transaction.timeout.ms": 20000},
        guarantee=guarantee,
    )


class Committed:
    """Reads a consumer group's committed offsets (without joining the group; offsets of
    a transaction still open are not waited for)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.topic = topic
        self.consumer = ck.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }
        )

    def __call__(self, within: float = 60) -> dict[int, int]:
        """The offsets, asked again while the group's coordinator moves, up to ``within`` s
        (0: once)."""
        found = committed_offsets(self.consumer, self.topic, PARTITIONS, within)
        return {tp.partition: tp.offset for tp in found}

    def close(self) -> None:
        self.consumer.close()


@pytest.mark.parametrize("victim", ["partition-leader", "active-controller"])
@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_node_killed_mid_stream_loses_nothing(
    cluster: PrivateCluster,
    unique_name: Callable[[str], str],
    kafka_reader: Callable[[str, str], Any],
    workers: Workers,
    tmp_path: Path,
    guarantee: str,
    victim: str,
) -> None:
    """TOTAL messages through 2 workers (``arroyo run --workers 2``: a worker that stops
    is restarted), Kafka (6 partitions, 3 replicas) to Kafka; the chosen node is
    SIGKILLed when a third is fed (the feed goes on through the kill) and a tenth is
    through, and started again once every partition it led moved on; at the end it is
    back in sync. Every input is in the output (lost = 0); with exactly-once, none twice
    in the read_committed output."""
    bootstrap = cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster.make_whole(admin)
    source, results = unique_name("in"), unique_name("out")
    for future in admin.create_topics(
        [NewTopic(t, PARTITIONS, NODES) for t in (source, results)]
    ).values():
        future.result(30)
    group = f"{source}-g"
    config = write_config(tmp_path, bootstrap, source, results, guarantee)
    supervisor = workers.start(config, "--workers", "2")
    output = kafka_reader(bootstrap, results)
    committed = Committed(bootstrap, group, source)
    placed: list[tuple[str, int]] = []
    fed = threading.Event()
    feeder = threading.Thread(target=feed, args=(bootstrap, source, placed, fed))
    try:
        wait_for_members(bootstrap, group, 2)
        # Asked now: it takes a JVM's start (seconds), and no node fails meanwhile.
        controller = cluster.active_controller() if victim == "active-controller" else 0
        feeder.start()
        output.wait(
            lambda: len(placed) >= TOTAL // 3 and len(output.ids) >= TOTAL // 10,
            120,
            "a third fed and a tenth through",
        )
        if victim == "partition-leader":
            led = collections.Counter(
                [
                    *cluster.leaders(admin, source).values(),
                    *cluster.leaders(admin, results).values(),
                ]
            )
            node = max(sorted(led), key=lambda n: led[n])
        else:
            node = controller
        # The partitions whose leader dies (all, should the node lead none of them).
        leaders = cluster.leaders(admin, source)
        watched = [p for p, leader in leaders.items() if leader == node] or sorted(leaders)
        before, fed_at_kill = committed(), len(placed)
        killed_at = time.monotonic()
        cluster.kill(node)

        def moved_on() -> bool:
            try:
                now = committed(within=0)  # the loop below asks again
            except ck.KafkaException:  # the group's coordinator died with the node
                return False
            ends = collections.Counter(p for _, p in placed) if fed.is_set() else {}
            return all(now[p] > before[p] or now[p] >= ends.get(p, 1 << 62) for p in watched)

        # With exactly-once, a worker can be stuck in a transaction call of the dead
        # coordinator: it stops after the transaction timeout (+5 s), and the group
        # reassigns its partitions a session timeout (45 s) later; this came twice in a
        # row in one run (101 s).
        deadline = killed_at + STUCK
        while not moved_on():
            assert time.monotonic() < deadline, (
                f"partitions {watched} of {source} (led by kafka-{node}) stuck {STUCK} s: "
                f"{committed()} committed, {before} at the kill"
            )
            time.sleep(0.2)
        resumed = time.monotonic() - killed_at
        cluster.up()  # the dead node comes back while the stream goes on
        feeder.join()
        expected = {event_id for event_id, _ in placed}
        assert len(expected) == TOTAL
        output.wait(lambda: expected <= set(output.ids), 180, "every input in the output")
        code = workers.stop(supervisor)
        log = workers.log(supervisor)
        # A worker that stops with an error (a transaction it could not commit) is
        # restarted, unless the supervisor was stopping by then; either makes its exit
        # code 1.
        restarts = log.count("restarting it in")
        clean = re.search(r"workers stopped: (\d+) of 2 ended cleanly", log)
        assert clean, log[-3000:]
        failures = restarts + 2 - int(clean.group(1))
        assert code == (1 if failures else 0), log[-3000:]
        cluster.make_whole(admin)  # the node came back and caught up
    finally:
        if feeder.ident is not None:
            feeder.join(150)
        output.close()
        committed.close()
    final = read_all(bootstrap, results, PARTITIONS)
    counts = collections.Counter(final)
    lost = expected - set(counts)
    duplicates = {i: n for i, n in counts.items() if n > 1}
    print(
        f"\n{guarantee}, {victim} (kafka-{node}, led source partitions {watched}) killed "
        f"when {fed_at_kill} were fed: {TOTAL} messages, 1 kill, {len(final)} outputs, "
        f"lost {len(lost)}, duplicated "
        f"{len(duplicates)} ({sum(duplicates.values()) - len(duplicates)} extra), partitions "
        f"it led moved on {resumed:.1f} s after the kill, {failures} worker failures "
        f"({restarts} restarted)"
    )
    assert not lost
    if guarantee == "exactly-once":
        assert not duplicates
        assert len(final) == TOTAL
