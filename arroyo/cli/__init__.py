"""The ``arroyo`` command line: run pipelines, bridge brokers, look at streams and schemas."""

from __future__ import annotations

from arroyo._clash import check_no_sentry_arroyo

check_no_sentry_arroyo()  # also when sentry-arroyo's __init__.py replaced Arroyo's

import typer  # noqa: E402

from arroyo.cli import pipeline, schemas, simulate, tail  # noqa: E402

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
pipeline.register(app)
app.command()(tail.tail)
simulate.register(app)
app.add_typer(schemas.app, name="schemas")


def main() -> None:
    """Entry point of the ``arroyo`` console script."""
    app()
