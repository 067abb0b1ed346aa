"""Publisher: a sink connector. It sends messages out and says when they are confirmed."""

from __future__ import annotations

import asyncio
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from arroyo.errors import PermanentError
from arroyo.message import Event, Message
from arroyo.runtime.ordering import failed, not_sent, start_send

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be handled, with why and where it came from.

    ``data`` is exactly what the listener received (all parts), so it can be replayed.
    """

    data: bytes | list[bytes]
    reason: str
    error: str
    source: Mapping[str, Any]
    attempts: int
    block: str
    timestamp: int = field(default_factory=time.time_ns)
    invalid: bool = False
    """True when the message broke a schema: it could not be decoded, or not encoded."""

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        data: bytes | memoryview | list[bytes | memoryview],
        source: Mapping[str, Any],
        attempts: int,
        block: str,
    ) -> DeadLetter:
        """The dead letter for ``exc``: its message is the reason, its type the error.
        ``data`` is what the listener received; memoryview parts are copied into bytes."""
        from arroyo.errors import DecodeError, EncodeError

        reason = str(exc) or "".join(traceback.format_exception_only(exc)).strip()
        # bytes(b) of a bytes object is b itself: only memoryviews are copied.
        raw = [bytes(part) for part in data] if isinstance(data, list) else bytes(data)
        invalid = isinstance(exc, DecodeError | EncodeError)
        return cls(raw, reason, type(exc).__name__, source, attempts, block, invalid=invalid)

    def headers(self) -> dict[str, str]:
        """The reason and the source coordinates as flat string headers (``arroyo.*``)."""
        headers = {
            "arroyo.dead-letter.reason": self.reason,
            "arroyo.dead-letter.error": self.error,
            "arroyo.dead-letter.attempts": str(self.attempts),
            "arroyo.dead-letter.block": self.block,
            "arroyo.dead-letter.timestamp": str(self.timestamp),
        }
        for key, value in self.source.items():
            headers[f"arroyo.source.{key}"] = str(value)
        return headers

    def to_event(self) -> Event:
        """The dead letter as an Event: headers as metadata, the original bytes as payload
        (the parts of a multipart message, in ``parts``, when there were several)."""
        metadata: dict[str, Any] = dict(self.headers())
        if isinstance(self.data, list):
            metadata["parts"] = list(self.data)
            payload = b""
        else:
            payload = self.data
        return Event(metadata=metadata, payload=payload, stream="dead-letter")


class Publisher(ABC):
    """Sends messages to a destination and reports when the destination has them.

    The Block calls :meth:`start` once, then :meth:`send` for each output in order (the
    next send may come before the previous one is confirmed), and :meth:`close` at the
    end. Implement :meth:`publish`; a destination that can queue sends while keeping
    their order implements :meth:`send` instead (:class:`PipelinedPublisher`).
    """

    _serial: _Serial | None = None

    @property
    def name(self) -> str:
        """Where this publisher writes to, for logs (never with a password)."""
        return type(self).__name__

    async def start(self) -> None:
        """Connect. Raises when the destination cannot be reached or refuses the settings."""

    @property
    def connected(self) -> bool:
        """Whether this publisher can deliver now, as far as it knows (connected).
        Read by the Block's readiness (``/readyz``), on the event loop, only after
        :meth:`start` returned; must not block.

        The default is True: the runtime itself sees a destination that went away, as
        publishes that fail and are retried (the Block is not ready meanwhile). A
        connector whose client knows sooner (a connection lost while idle, the broker
        reported down) returns False from then until it is connected again.
        """
        return True

    @abstractmethod
    async def publish(self, message: Message) -> None:
        """Send ``message`` and return once the destination confirmed it (Kafka delivery
        report, RabbitMQ publisher confirm, Redis reply...). Raises when it was not
        confirmed: a PermanentError when retrying cannot help (too large, breaks the
        schema), anything else when a retry may."""

    def send(self, message: Message, wire: bytes | None = None) -> Awaitable[None]:
        """Start sending ``message`` now and return what completes once it is confirmed.

        ``wire``, when given, is the exact bytes ``message`` arrived as: the Block
        forwards it unchanged (a Passthrough). A publisher that writes the same framing
        may send them instead of encoding the message again (``codec.encode(message,
        wire)`` does that check); any other publisher ignores them.

        Messages must reach the destination in the order of send() calls, also when one
        fails: a send given after one that failed must not be written but fail with
        :class:`~arroyo.runtime.ordering.NotSent`, unless every earlier send had
        completed when it was given (the ordering rule of :mod:`arroyo.runtime.ordering`;
        :class:`~arroyo.runtime.ordering.FailStop` keeps that state for a connector).

        The default runs :meth:`publish` for one message after the other, in a task of
        the publisher's (order is kept whatever publish does; after a failure, what was
        queued behind fails with NotSent); a destination that can queue sends in order
        overrides this (:class:`PipelinedPublisher`).
        """
        serial = self._serial
        if serial is None:
            serial = self._serial = _Serial(self)
        return serial.add(message)

    def send_many(
        self, messages: Sequence[Message], wires: Sequence[bytes | None]
    ) -> list[asyncio.Future[None]]:
        """:meth:`send` each of ``messages``, with the ``wire`` at the same place (None:
        none), in order, as one call; return a future per message taken, in order.

        Never raises: a message that cannot be sent (:meth:`send` would raise) gets a
        failed future. Stops after a message whose future failed at once with an error a
        retry may cure (not a :class:`~arroyo.errors.PermanentError`): the messages after
        it are not taken (the list is shorter), and the runtime holds them back as rule
        1 of :mod:`arroyo.runtime.ordering` says.

        The Block calls this with the outputs of a batch of received messages. The
        default calls :meth:`send` for each; a connector overrides it where a batch costs
        less as one call (one loop with no call per layer, one lock, one pipeline).
        """
        sent: list[asyncio.Future[None]] = []
        for message, wire in zip(messages, wires, strict=True):
            future = start_send(self, message, wire)
            sent.append(future)
            if future.done() and failed(future):
                break
        return sent

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Send a dead letter and return once confirmed. The default sends
        :meth:`DeadLetter.to_event`; brokers with headers send the original bytes with the
        reason and source in headers instead."""
        await self.publish(letter.to_event())

    async def close(self) -> None:
        """Send what is buffered, wait for its confirmations, disconnect."""

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Serial:
    """The default :meth:`Publisher.send`: publishes queued messages one at a time, in
    order, in one task; a failure fails what is queued behind it (fail-stop)."""

    __slots__ = ("_queue", "_task", "publisher")

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self._queue: deque[tuple[Message, asyncio.Future[None]]] = deque()
        self._task: asyncio.Task[None] | None = None

    def add(self, message: Message) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((message, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return done

    async def _run(self) -> None:
        queue = self._queue
        while queue:
            message, done = queue.popleft()
            if done.done():  # cancelled: nobody waits for it any more
                continue
            try:
                await self.publisher.publish(message)
            except asyncio.CancelledError:
                done.cancel()
                while queue:
                    queue.popleft()[1].cancel()
                raise
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
                if not isinstance(exc, PermanentError):
                    while queue:
                        _, behind = queue.popleft()
                        if not behind.done():
                            behind.set_exception(not_sent(self.publisher.name))
            else:
                if not done.done():
                    done.set_result(None)


class PipelinedPublisher(Publisher):
    """A Publisher that queues each message as soon as it is given (the connectors of
    the brokers): implement :meth:`send`; :meth:`publish` is sending and waiting."""

    @abstractmethod
    def send(self, message: Message, wire: bytes | None = None) -> Awaitable[None]:
        """Queue ``message`` now, behind those sent before; return what completes once
        the destination confirmed it (or fails as :meth:`Publisher.publish` raises).
        ``wire``: as for :meth:`Publisher.send`."""

    async def publish(self, message: Message) -> None:
        """Send ``message`` and return once the destination confirmed it."""
        await self.send(message)


def send_runs(
    messages: Sequence[Message],
    wires: Sequence[bytes | None],
    prepare: Callable[[Message, bytes | None], E],
    send_run: Callable[[list[E]], list[asyncio.Future[None]]],
) -> list[asyncio.Future[None]]:
    """:meth:`Publisher.send_many` for a connector that sends a run of prepared messages
    in one call: ``prepare(message, wire)`` makes what ``send_run`` takes for one message
    (encoded, framed) or raises (an EncodeError); ``send_run(run)`` sends a run in order
    and returns a future per message taken, as ``send_many`` does (it may stop early).

    A message that cannot be prepared fails alone: the run before it is sent, then the
    next run is started after it (a PermanentError; another error stops here, as
    ``send_many`` says)."""
    sent: list[asyncio.Future[None]] = []
    run: list[E] = []
    for message, wire in zip(messages, wires, strict=True):
        try:
            run.append(prepare(message, wire))
        except Exception as exc:
            taken = send_run(run)
            sent += taken
            if len(taken) < len(run) or (taken and taken[-1].done() and failed(taken[-1])):
                return sent  # send_run stopped there
            run = []
            refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            sent.append(refused)
            if not isinstance(exc, PermanentError):
                return sent
    sent += send_run(run)
    return sent
