"""The limit row's pure parts: finding Kafka's jars, reading ProducerPerformance's output."""

from __future__ import annotations

from pathlib import Path

from bench.java_producer import (
    TOOL,
    command,
    find_libs,
    parse_summary,
    records,
    warmup,
    write_payload,
)

PERIODIC = (
    "7877 records sent, 1574.5 records/sec (1.54 MB/sec), 2034.1 ms avg latency, "
    "2943.0 ms max latency.\n"
)
FINAL = (
    "20000 records sent, 3019.8 records/sec (2.95 MB/sec), 2821.58 ms avg latency, "
    "3609.00 ms max latency, 3166 ms 50th, 3513 ms 95th, 3581 ms 99th, 3589 ms 99.9th.\n"
)


def test_the_final_line_gives_records_and_percentiles() -> None:
    assert parse_summary(PERIODIC + FINAL) == (20000, 3166.0, 3581.0)


def test_periodic_lines_alone_are_no_summary() -> None:
    assert parse_summary(PERIODIC) is None
    assert parse_summary("") is None


def _jar(root: Path, version: str) -> None:
    libs = root / f"kafka-{version}" / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka-tools-{version}.jar").write_bytes(b"")
    (libs / f"kafka-tools-api-{version}.jar").write_bytes(b"")


def test_the_newest_kafka_of_the_first_root_holding_one(tmp_path: Path) -> None:
    empty, cache = tmp_path / "empty", tmp_path / "cache"
    empty.mkdir()
    _jar(cache, "4.1.2")
    _jar(cache, "4.10.0")  # numerically newer, alphabetically older
    _jar(tmp_path / "later", "9.0.0")
    assert find_libs([empty, cache, tmp_path / "later"]) == cache / "kafka-4.10.0" / "libs"


def test_the_api_jar_alone_is_not_the_tools(tmp_path: Path) -> None:
    libs = tmp_path / "kafka-4.1.2" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka-tools-api-4.1.2.jar").write_bytes(b"")
    assert find_libs([tmp_path]) is None


def test_the_command_sends_the_warm_up_and_the_counted_records() -> None:
    line = command("java", Path("/libs"), "t", 100 + warmup(100), Path("/p"))
    assert line[line.index(TOOL) + 1 :][:8] == [
        "--topic",
        "t",
        "--num-records",
        "125",
        "--payload-file",
        "/p",
        "--throughput",
        "-1",
    ]
    assert "acks=all" in line
    assert "/libs/*" in line
    assert warmup(1) == 1


def test_the_payload_is_one_line_of_the_size(tmp_path: Path) -> None:
    path = tmp_path / "payload"
    write_payload(path, 1 << 20)
    data = path.read_bytes()
    assert len(data) == 1 << 20
    assert data.isalpha()
    assert data.isascii()


def test_short_runs_are_lengthened_to_a_hundred_mebibytes() -> None:
    assert records(20_000, 1 << 10) == 102_400
    assert records(200_000, 1 << 10) == 200_000
    assert records(300, 1 << 20) == 300
    assert records(10, 1 << 20) == 100
    assert records(1, 3) == -(-(100 << 20) // 3)
