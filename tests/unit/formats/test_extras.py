"""Each format's libraries are optional: the core imports without them, and a missing one
says in one line which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCK = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in {BLOCKED} or name.split(".")[0] in {BLOCKED}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Missing())
"""
LIBRARIES = {
    "cbor2",
    "dectris",
    "dectris.compression",
    "bitshuffle",
    "lz4",
    "streaming_data_types",
    "msgpack_numpy",
}


def run(code: str) -> subprocess.CompletedProcess[str]:
    prelude = BLOCK.replace("{BLOCKED}", repr(LIBRARIES))
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_core_imports_without_the_format_libraries() -> None:
    result = run(
        """
        import arroyo, arroyo.parsers, arroyo.formats, arroyo.runtime.frames, arroyo.simulate
        import arroyo.formats.compression, arroyo.formats.arrays, arroyo.parsers.bluesky
        from arroyo.parsers import available
        print(sorted(available()))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "'stream2'" in result.stdout and "'ess'" in result.stdout


@pytest.mark.parametrize(
    ("code", "extra"),
    [
        ("from arroyo.parsers import make_parser; make_parser('stream2')", "stream2"),
        ("from arroyo.parsers import make_parser; make_parser('ess')", "ess"),
        ("from arroyo.formats import make_format; make_format('ess')", "ess"),
        ("from arroyo.formats import make_format; make_format('bluesky-kafka')", "bluesky-kafka"),
        (
            "from arroyo.brokers import open_publisher; open_publisher('kafka://h/t?format=ess')",
            "ess",
        ),
        (
            "from arroyo import Event, ArrayInfo\n"
            "packed = (8).to_bytes(8, 'big') + bytes(12)  # announces 8 bytes: a 2x2 <u2\n"
            "Event(payload=packed, array=ArrayInfo('<u2', (2, 2), 'bslz4')).to_array()",
            "stream2",
        ),
        (
            "from arroyo.formats.compression import compress; compress(bytes(8), 'bslz4', 2)",
            "stream2-compress",
        ),
    ],
    ids=[
        "stream2 parser",
        "ess parser",
        "ess format",
        "bluesky-kafka format",
        "kafka publisher format",
        "to_array",
        "compress",
    ],
)
def test_a_missing_library_names_the_extra(code: str, extra: str) -> None:
    result = run(
        f"""
        from arroyo.errors import MissingDependencyError
        try:
            {code.replace(chr(10), chr(10) + " " * 12)}
        except MissingDependencyError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert f"pip install 'arroyo-streams[{extra}]'" in line
