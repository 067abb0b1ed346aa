"""How ``arroyo view URL`` reads its source: looking, or (when asked) consuming.

**Looking** (the default) goes through the source's browser (:mod:`arroyo.browse`, as
``arroyo tail``): nothing is taken, acknowledged or committed, no consumer group is
joined, so a running pipeline is not disturbed. It starts at the end of the source
(only what comes from now on: a live view) unless asked to start at the beginning of
what the source keeps; an Avro file (``file://``) is shown from its beginning. A
RabbitMQ classic or quorum queue cannot be looked at without holding its messages,
which a view that runs for hours must not do: view a stream queue, or ``--consume`` a
queue of the viewer's own.

**Consuming** (``--consume``, and always for ``zmq+pull://``, which cannot be looked at)
runs a Block: the source's listener, no operator, the viewer as its only publisher. The
viewer then takes its share of the messages, as any consumer: Kafka, Redis Streams and
memory URLs must name a consumer group of the viewer's own (``?group=viewer``), never a
running pipeline's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arroyo.brokers import BrokerURL, open_listener
from arroyo.browse import Browser, Reading, open_browser
from arroyo.browse.show import Shown, Viewer
from arroyo.errors import ConfigError
from arroyo.message import Event, Message
from arroyo.runtime import Block
from arroyo.runtime.listener import Listener
from arroyo.runtime.parser import Parser
from arroyo.runtime.tasks import cancel_and_wait
from arroyo.view.hub import Hub
from arroyo.view.publisher import ViewPublisher

if TYPE_CHECKING:
    from arroyo.view.server import ViewServer

log = logging.getLogger("arroyo.view")

GROUPS = ("kafka", "redis", "rediss", "memory")
"""Schemes whose listener reads in a consumer group (``?group=``)."""
CONSUMED = ("zmq+pull",)
"""Schemes that can only be read by taking the messages."""


def dead_letter_event(shown: Shown) -> Event:
    """A dead letter the source holds, as the event the viewer counts and shows (its
    reason, error and where it came from in the metadata)."""
    letter = dict(shown.dead_letter or {})
    metadata: dict[str, Any] = {f"arroyo.dead-letter.{k}": str(v) for k, v in letter.items()}
    if shown.message is not None:
        metadata["arroyo.dead-letter.original"] = shown.message.kind
    return Event(metadata=metadata, stream="dead-letter")


@dataclass
class Source:
    """What ``arroyo view`` reads: ``url`` with ``parser``; by a browser (``consume``
    False) starting at the end (``from_end``) or beginning, or by a consuming listener.
    Made with :func:`plan`; :meth:`run` feeds a hub until the source ends or ``stop()``."""

    url: BrokerURL
    parser: Parser
    consume: bool
    from_end: bool
    options: dict[str, Any] = field(default_factory=dict)
    shown: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the browser is open (looking: where reading starts is fixed) or the
    Block is about to start (consuming)."""
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _block: Block | None = None

    @property
    def how(self) -> str:
        """How it is read, for the user."""
        if self.consume:
            return "consuming: messages are taken (acknowledged) by the viewer"
        where = "from the end" if self.from_end else "from the beginning"
        return f"looking without consuming, {where}"

    def browser(self) -> Browser:
        """The browser (raises ConfigError for a source that cannot be looked at)."""
        return open_browser(self.url, Reading(from_end=self.from_end), self.options)

    def listener(self) -> Listener:
        """The consuming listener."""
        return open_listener(self.url, self.options, self.parser)

    def stop(self) -> None:
        """Stop reading (from a signal handler, on the loop's thread)."""
        self._stopping.set()
        if self._block is not None:
            self._block.stop()

    async def run(self, server: ViewServer) -> None:
        """Read and hand every message to the hub of ``server`` (consuming: through a
        Block whose publisher is a :class:`ViewPublisher` of ``server``). Returns when the
        source ends or :meth:`stop` was called; raises ArroyoError when the source cannot
        be read."""
        if self.consume:
            await self._consume(server)
        else:
            await self._look(server.hub)

    async def _consume(self, server: ViewServer) -> None:
        listener = self.listener()
        parser: Any = listener.parser
        if isinstance(getattr(parser, "missing", None), int):
            server.hub.counters.append(lambda: {"lost": int(parser.missing)})
        publisher = ViewPublisher(server.host, server.port, server.settings)
        block = Block(listener, None, [publisher], name="view")
        self._block = block
        if self._stopping.is_set():
            return
        self.opened.set()
        await block.run()
        self.shown = block.stats.received

    async def _look(self, hub: Hub) -> None:
        viewer = Viewer(self.parser)
        browser = self.browser()
        try:
            await browser.open()
            queue_type = getattr(browser, "queue_type", None)
            if queue_type is not None and queue_type != "stream":
                raise ConfigError(
                    f"{self.url}: a {queue_type or 'classic or quorum'} queue cannot be looked "
                    "at without holding its messages from its other consumers for as long as "
                    "the view runs: view a stream queue, or --consume a queue of the viewer's own"
                )
            self.opened.set()
            reading = asyncio.ensure_future(self._show(browser, viewer, hub))
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            await cancel_and_wait(reading)
        finally:
            await browser.close()
        log.info("view: %s", browser.outcome)

    async def _show(self, browser: Browser, viewer: Viewer, hub: Hub) -> None:
        async with contextlib.aclosing(browser.records()) as records:
            async for record in records:
                for shown in viewer.show(record):
                    message: Message | None
                    if shown.kind == "undecodable":
                        hub.undecodable_record(shown.reason or "cannot be read")
                        continue
                    if shown.kind == "dead-letter":
                        message = dead_letter_event(shown)
                    else:
                        message = shown.message
                    if message is not None:
                        hub.offer(message)
                        self.shown += 1


def plan(
    url: BrokerURL,
    parser: Parser,
    *,
    consume: bool = False,
    from_beginning: bool | None = None,
    options: dict[str, Any] | None = None,
) -> Source:
    """How to read ``url`` (see the module docstring). Raises ConfigError for a
    combination that cannot work, before anything connects."""
    consume = consume or url.scheme in CONSUMED
    if consume:
        if from_beginning is not None:
            raise ConfigError(
                f"{url}: --from-beginning/--from-end are for looking; a consumer reads where "
                "its group left off"
            )
        if url.scheme in GROUPS and not (url.query.get("group") or (options or {}).get("group")):
            raise ConfigError(
                f"{url}: consuming joins a consumer group: name one of the viewer's own with "
                "?group=NAME (never a running pipeline's group: the viewer would take its "
                "messages)"
            )
    from_end = url.scheme != "file" if from_beginning is None else not from_beginning
    source = Source(url, parser, consume, from_end, dict(options or {}))
    if consume:
        source.listener()  # checks the options now
    else:
        source.browser()
    return source
