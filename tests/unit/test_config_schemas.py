"""Which writer schemas a listener knows: a reader with an older schema resolves data
written with a newer one, as the README's cross-facility recipe says."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from arroyo import Run
from arroyo.brokers import memory
from arroyo.build import build_file
from arroyo.codec import Codec
from arroyo.schema import SCHEMA_DIR, load
from arroyo.testing import Recorder

EXAMPLES = SCHEMA_DIR / "examples"


def _v2_bytes() -> list[bytes]:
    writer = Codec(writer=load(EXAMPLES / "frame-metadata-v2.avsc"))
    run = Run("scan-7")
    metadata = {"frame": 1, "exposure_s": 0.1, "detector": "eiger", "energy_kev": 12.4}
    return [writer.encode(m) for m in (run.start({}), run.event(metadata, b"x"), run.stop())]


async def _read_as(config: Path, topic: str) -> Recorder:
    for data in _v2_bytes():
        memory.topic(topic).append(data)
    [built] = build_file(config)
    out = Recorder()
    built.block.add_publisher(out)
    built.block.dead_letter = out
    built.block.max_messages = 3
    await built.block.run()
    memory.delete(topic)
    return out


def _config(folder: Path, topic: str, extra: str = "") -> Path:
    path = folder / "reader.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            blocks:
              - name: facility-b
                listener:
                  url: memory://{topic}
                  schema: schemas/frame-metadata-v1.avsc
            """
        )
        + extra
    )
    return path


async def test_a_v1_reader_knows_the_writer_schemas_beside_its_own(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    for name in ("frame-metadata-v1.avsc", "frame-metadata-v2.avsc"):
        shutil.copy(EXAMPLES / name, tmp_path / "schemas" / name)
    out = await _read_as(_config(tmp_path, "cfg-schemas-beside"), "cfg-schemas-beside")
    assert not out.dead_letters
    event = out.published[1]
    assert event.metadata == {"frame": 1, "exposure_s": 0.1, "detector": "eiger"}  # type: ignore[union-attr]


async def test_schemas_names_folders_and_files_explicitly(tmp_path: Path) -> None:
    """With `schemas:` given, only what it names is known: a v1 reader that lists only
    its own file cannot read v2 data (a dead letter saying so), one that lists v2's
    folder can."""
    (tmp_path / "schemas").mkdir()
    (tmp_path / "v2").mkdir()
    shutil.copy(EXAMPLES / "frame-metadata-v1.avsc", tmp_path / "schemas")
    shutil.copy(EXAMPLES / "frame-metadata-v2.avsc", tmp_path / "v2")
    own = "      schemas: [schemas/frame-metadata-v1.avsc]\n"
    out = await _read_as(_config(tmp_path, "cfg-schemas-own", own), "cfg-schemas-own")
    assert len(out.dead_letters) == 3
    assert "writer schema" in out.dead_letters[0].reason
    folder = "      schemas: [v2]\n"
    out = await _read_as(_config(tmp_path, "cfg-schemas-dir", folder), "cfg-schemas-dir")
    assert not out.dead_letters and len(out.published) == 3
