"""The ``arroyo`` command line: run pipelines, bridge brokers, look at streams and schemas."""

from __future__ import annotations

from typing import Annotated

from arroyo._clash import check_no_sentry_arroyo

check_no_sentry_arroyo()  # also when sentry-arroyo's __init__.py replaced Arroyo's

import typer  # noqa: E402

from arroyo.cli import check, pipeline, schemas, simulate, tail, view  # noqa: E402
from arroyo.cli.version import show_version  # noqa: E402

app = typer.Typer(
    help=(
        "Stream scientific instrument data through Kafka, Redis, RabbitMQ and ZeroMQ, "
        "with Avro schemas and at-least-once delivery."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


pipeline.register(app)
app.command()(tail.tail)
app.command()(view.view)
check.register(app)
simulate.register(app)
app.add_typer(schemas.app, name="schemas")


def main() -> None:
    """Entry point of the ``arroyo`` console script. An ArroyoError that a command did
    not report itself is printed as one line (``error: ...``), never as a traceback."""
    from arroyo.cli.common import fail
    from arroyo.cli.leave import exit_code, watchdog
    from arroyo.errors import ArroyoError

    try:
        try:
            app()
        except ArroyoError as exc:
            raise SystemExit(fail(exc).exit_code) from None
    except SystemExit as stop:
        watchdog(exit_code(stop))  # a thread stuck in a client call does not keep it alive
        raise
