"""What each broker is held to: the one place where a broker that cannot meet a concern
says so, and why.

Every concern of the contract is a test class (one module per concern, in this folder)
whose tests are written once against the broker interface of ``adapters.py``. The
``broker`` fixture runs each of them on every broker of :data:`BROKERS` that meets its
concern: a broker is left out of a concern here, by declaration with its reason, never
by a skip (``test_declarations.py`` checks that this docstring shows the declarations).

| concern | memory | kafka | redis | rabbitmq | zmq |
|---|---|---|---|---|---|
| order | yes | yes | yes | yes | yes |
| acknowledgement | yes | yes | yes | yes | n/a: no acks |
| redelivery | yes | yes | yes | yes | n/a: no acks |
| killed worker | n/a: in process | yes | yes | yes | n/a: no acks |
| dead letter | yes | yes | yes | yes | yes |
| max_deliveries | n/a: in process | yes | yes | yes | n/a: no acks |
| drain | n/a: in process | yes | yes | yes | yes |
| secrets | n/a: no connection | yes | yes | yes | n/a: no credentials |
| options | yes | yes | yes | yes | yes |
| extras | n/a: no client | yes | yes | yes | yes |
| tls | n/a: no connection | yes | yes | yes | n/a: no TLS |
| batches | n/a: one by one | yes | yes | yes | yes |

The concerns:

- order: a run goes through a Block in order.
- acknowledgement: what a Block acknowledged is not delivered again.
- redelivery: what a listener left unacknowledged is delivered again.
- killed worker: the work of a SIGKILLed worker is done by another.
- dead letter: poison goes to the dead letter, the rest goes on.
- max_deliveries: a message that keeps killing workers is dead-lettered.
- drain: SIGTERM finishes and acknowledges in-flight work, exit 0.
- secrets: a wrong password never appears in errors or logs.
- options: an unknown option is named in the error, with the broker.
- extras: a missing client library names the extra to install.
- tls: TLS round trip; a wrong CA is refused, saying so.
- batches: what waits together is handed to the Block together (one offer_many).

The reasons (n/a: why):

- in process: the memory broker lives in the worker's process: a worker that dies takes
  it, and what it held, along (the Block's graceful stop on it is tested in
  tests/unit/runtime/test_block.py).
- no acks: ZeroMQ has no acknowledgements: a message is gone once received (at most
  once, by design), so nothing is redelivered.
- no connection: the memory broker is in the process: no connection, no credentials.
- no client: the memory broker is in the core: it needs no client library.
- no credentials: the ZeroMQ connectors take no credentials.
- no TLS: the ZeroMQ connectors offer no TLS (ZeroMQ's CURVE is not offered).
- one by one: the memory broker hands its entries over one at a time: they are in the
  process already, with no read of many to keep together.

How each broker gives back what a worker did not acknowledge (the adapters set the options
that make it quick: ``adapters.py``):

- memory: a listener that closes gives back what it did not acknowledge, with its
  delivery count raised.
- kafka: the group's next member reads from the last committed offset (a killed
  member's partitions after ``session.timeout.ms``); Kafka keeps no delivery count:
  Arroyo's delivery journal counts the deliveries that killed a worker.
- redis: entries pending for a consumer that is gone are claimed (``XAUTOCLAIM``) once
  idle for ``min_idle_ms``, with their delivery count.
- rabbitmq: the broker puts back what a closed or dead connection had not acknowledged.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field

CONCERNS: dict[str, str] = {
    "order": "a run goes through a Block in order",
    "acknowledgement": "what a Block acknowledged is not delivered again",
    "redelivery": "what a listener left unacknowledged is delivered again",
    "killed worker": "the work of a SIGKILLed worker is done by another",
    "dead letter": "poison goes to the dead letter, the rest goes on",
    "max_deliveries": "a message that keeps killing workers is dead-lettered",
    "drain": "SIGTERM finishes and acknowledges in-flight work, exit 0",
    "secrets": "a wrong password never appears in errors or logs",
    "options": "an unknown option is named in the error, with the broker",
    "extras": "a missing client library names the extra to install",
    "tls": "TLS round trip; a wrong CA is refused, saying so",
    "batches": "what waits together is handed to the Block together (one offer_many)",
}
"""Every concern of the contract, as the test classes name it (``concern = "..."``)."""

REASONS: dict[str, str] = {
    "in process": "the memory broker lives in the worker's process: a worker that dies takes "
    "it, and what it held, along (the Block's graceful stop on it is tested in "
    "tests/unit/runtime/test_block.py)",
    "no acks": "ZeroMQ has no acknowledgements: a message is gone once received (at most "
    "once, by design), so nothing is redelivered",
    "no connection": "the memory broker is in the process: no connection, no credentials",
    "no client": "the memory broker is in the core: it needs no client library",
    "no credentials": "the ZeroMQ connectors take no credentials",
    "no TLS": "the ZeroMQ connectors offer no TLS (ZeroMQ's CURVE is not offered)",
    "one by one": "the memory broker hands its entries over one at a time: they are in "
    "the process already, with no read of many to keep together",
}
"""Why a broker does not meet a concern: a short reason (as the table shows it) -> what
it means."""


@dataclass(frozen=True)
class Declared:
    """One broker as the contract sees it.

    - ``name``: the broker's name (as its connector declares it, and in its errors).
    - ``not_met``: concern -> why the broker cannot meet it (a key of :data:`REASONS`; the
      table's "n/a: why").
    - ``acknowledges``: a message is acknowledged to the broker (else at most once).
    - ``counts_deliveries``: the broker says how often it delivered a message.
    - ``extra``: the extra that installs its client (None: it needs none);
      ``clients``: the top-level modules of that client.
    """

    name: str
    not_met: Mapping[str, str] = field(default_factory=dict)
    acknowledges: bool = True
    counts_deliveries: bool = True
    extra: str | None = None
    clients: tuple[str, ...] = ()

    def meets(self, concern: str) -> bool:
        """True when the contract runs ``concern`` on this broker."""
        if concern not in CONCERNS:
            raise KeyError(f"unknown concern {concern!r}; known: {', '.join(CONCERNS)}")
        return concern not in self.not_met


BROKERS: tuple[Declared, ...] = (
    Declared(
        "memory",
        not_met={
            "killed worker": "in process",
            "max_deliveries": "in process",
            "drain": "in process",
            "secrets": "no connection",
            "extras": "no client",
            "tls": "no connection",
            "batches": "one by one",
        },
    ),
    Declared(
        "kafka",
        counts_deliveries=False,
        extra="kafka",
        clients=("confluent_kafka",),
    ),
    Declared(
        "redis",
        extra="redis",
        clients=("redis", "hiredis"),
    ),
    Declared(
        "rabbitmq",
        extra="rabbitmq",
        clients=("aio_pika", "aiormq", "pamqp"),
    ),
    Declared(
        "zmq",
        not_met={
            "acknowledgement": "no acks",
            "redelivery": "no acks",
            "killed worker": "no acks",
            "max_deliveries": "no acks",
            "secrets": "no credentials",
            "tls": "no TLS",
        },
        acknowledges=False,
        counts_deliveries=False,
        extra="zmq",
        clients=("zmq",),
    ),
)
"""Every broker the contract runs on, in the table's order."""

DECLARED: dict[str, Declared] = {broker.name: broker for broker in BROKERS}


def meeting(concern: str) -> list[str]:
    """The names of the brokers that meet ``concern``, in the table's order."""
    return [broker.name for broker in BROKERS if broker.meets(concern)]


def table() -> str:
    """The concern x broker table and what its reasons mean, as the module docstring
    shows them (markdown)."""
    lines = [
        "| concern | " + " | ".join(b.name for b in BROKERS) + " |",
        "|---|" + "---|" * len(BROKERS),
    ]
    for concern in CONCERNS:
        cells = [
            "yes" if broker.meets(concern) else f"n/a: {broker.not_met[concern]}"
            for broker in BROKERS
        ]
        lines.append(f"| {concern} | " + " | ".join(cells) + " |")
    lines += ["", "The concerns:", ""]
    lines += [_bullet(f"{concern}: {what}.") for concern, what in CONCERNS.items()]
    lines += ["", "The reasons (n/a: why):", ""]
    lines += [_bullet(f"{reason}: {what}.") for reason, what in REASONS.items()]
    return "\n".join(lines)


def _bullet(text: str) -> str:
    return textwrap.fill(text, 88, initial_indent="- ", subsequent_indent="  ")
