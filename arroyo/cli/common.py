"""Helpers shared by the commands."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from arroyo.errors import ArroyoError, ConfigError
from arroyo.runtime.logs import JsonFormatter, redact

if TYPE_CHECKING:
    from arroyo.brokers.url import BrokerURL
    from arroyo.runtime.parser import Parser


def fail(exc: ArroyoError | str, code: int = 2) -> typer.Exit:
    """Print ``error: ...`` (passwords hidden) to stderr; return the Exit to raise.
    With ``--log-format json``, the error is a JSON log line (level ERROR) instead."""
    handlers = logging.getLogger().handlers
    if handlers and isinstance(handlers[0].formatter, JsonFormatter):
        logging.getLogger("arroyo.cli").error("error: %s", redact(str(exc)))
    else:
        typer.secho(f"error: {redact(str(exc))}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def url_parser(url: BrokerURL, schemas: list[Path], registry: str | None) -> Parser:
    """The parser a URL asks for with its ``parser`` query option (taken out of the URL):
    Arroyo's codec by default, knowing the writer schemas in ``schemas`` (files, or
    folders of ``.avsc`` files) and, with ``registry``, a schema registry; or the named
    parser of an instrument's format, which takes neither."""
    name = url.query.pop("parser", "arroyo")
    if name != "arroyo":
        from arroyo.parsers import make_parser

        if schemas or registry:
            raise ConfigError(f"--schema and --registry are for Arroyo data, not {name}")
        return make_parser(name)
    from arroyo.codec import Codec
    from arroyo.registry import Registry
    from arroyo.runtime.parser import AvroParser
    from arroyo.schema import SchemaStore, load

    store = SchemaStore()
    for path in schemas:
        files = sorted(path.glob("*.avsc")) if path.is_dir() else [path]
        if not files:
            raise ConfigError(f"--schema {path}: the folder has no .avsc file")
        for file in files:
            store.add(load(file))
    return AvroParser(Codec(store=store, registry=Registry(registry) if registry else None))
