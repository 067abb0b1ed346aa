"""The messages' fast maker for decoders (``assembler``): the same result as ``__init__``."""

from __future__ import annotations

import dataclasses

import pytest

from arroyo.message import ArrayInfo, Event, Message, Start, Stop, assembler


@pytest.mark.parametrize("cls", [Start, Event, Stop])
def test_an_assembled_message_equals_the_one_init_makes_field_for_field(
    cls: type[Message],
) -> None:
    made = cls(stream="s", seq=3, id="i", timestamp=5, trace={"traceparent": "t"})
    if isinstance(made, Event):
        made = dataclasses.replace(
            made, metadata={"a": 1}, payload=b"p", array=ArrayInfo("<u2", (2,))
        )
    else:
        made = dataclasses.replace(made, data={"a": [1]})
    values = [getattr(made, f.name) for f in dataclasses.fields(cls)]
    assembled = assembler(cls)(*values)
    assert type(assembled) is cls
    assert [getattr(assembled, f.name) for f in dataclasses.fields(cls)] == values
    assert assembled == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        assembled.seq = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        assembler(cls)(*values[:-1])  # every field must be given
