"""The viewer's state: what it was given, what it keeps, and what each client is sent.

:meth:`Hub.offer` is all a pipeline calls. It takes any thread, never waits and does
almost nothing: it counts the message and queues it for the hub's own event loop (the
server's thread). At most ``pending_frames`` frames wait there; a newer one makes the
oldest go without its image (counted in ``skipped``). So the viewer falls behind, never
the pipeline.

The hub's own work is bounded too, so that it takes little from the pipeline's process
however fast messages come: it publishes what waits in batches, at most ``max_fps``
batches a second; in a batch, only the newest frame is prepared (the others go without
their image, counted in ``skipped``), and at most ``max_rate / max_fps`` messages are
shown (its Starts and Stops, and the newest; the others are counted in
``skipped_events``). ``max_fps=0`` shows every message and prepares every frame.

On its loop, the hub numbers each message (``seq``, 1, 2, ...), reduces a frame to the
view (:mod:`arroyo.view.image`: only while a client is connected), packs it once
(:mod:`arroyo.view.wire`) and puts the same bytes in every client's
:class:`~arroyo.view.clients.ClientQueue`. It keeps:

- the Start and Stop of the last runs: a client that joins late gets them first;
- the newest frame (the message itself: it is reduced when a client joins);
- the last ``buffer`` messages (frames among them up to ``buffer_mb``), for a client that
  reconnects with ``?from=SEQ``, and to draw a late joiner's plot of the current run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from arroyo.message import Event, Message, Start, Stop, new_id
from arroyo.runtime.logs import Throttle
from arroyo.view.clients import ClientQueue
from arroyo.view.image import picture
from arroyo.view.kept import Recent, RunSeen
from arroyo.view.settings import ViewSettings
from arroyo.view.wire import Outgoing, describe

log = logging.getLogger("arroyo.view")

RUNS = 8
"""Runs whose Start and Stop are kept for late joiners."""
LARGE = 1 << 16
"""Payloads at least this large are let go as soon as they are not needed (an event
waiting to be shown keeps its metadata, and its frame only while it may be drawn)."""
SEEN = 4096
"""Message ids remembered: a message seen again (a redelivery, or the same Start handed
over by two blocks) is shown once."""
DEAD_LETTER = "arroyo.dead-letter.reason"


def _without_payload(message: Message) -> Message:
    """``message`` without its payload (an Event's metadata and array description stay)."""
    if isinstance(message, Event) and len(message.payload):
        return dataclasses.replace(message, payload=b"")
    return message


@dataclass(eq=False)
class Client:
    """One connected page: its queue and the largest frame it wants."""

    queue: ClientQueue
    max_size: int
    joined: float = field(default_factory=time.monotonic)


class Hub:
    """Everything a viewer shows, fed by :meth:`offer` from any thread, served on ``loop``."""

    def __init__(self, settings: ViewSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.epoch = new_id()[:12]
        """This hub's name: a page that reconnects to another epoch starts afresh."""
        self.counters: list[Callable[[], Mapping[str, int]]] = []
        """Counters of the source shown with the hub's (``lost``: messages its listener
        knows were lost, such as ZeroMQ gaps), called on the hub's loop."""
        self.received = 0
        self.frames = 0
        self.bytes = 0
        self.skipped = 0
        """Frames sent without their image: beyond ``max_fps``, or the hub fell behind."""
        self.skipped_events = 0
        """Messages not shown at all: beyond ``max_rate``, or the hub fell behind."""
        self.undecodable = 0
        self.problem = ""
        """Why the last undecodable message could not be read."""
        self._lock = threading.Lock()
        self._pending: deque[list[Any]] = deque()
        self._pending_frames: deque[list[Any]] = deque()
        self._scheduled = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        # On the hub's loop only:
        self.seq = 0
        self.clients: set[Client] = set()
        self.dead_letters = 0
        self.image_errors = 0
        self.duplicates = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.recent = Recent(settings.buffer, settings.buffer_mb * 1e6)
        """The last messages sent, for pages that reconnect."""
        self._runs: OrderedDict[str, RunSeen] = OrderedDict()
        self._current = ""
        self._latest: tuple[Outgoing, Event] | None = None
        self._samples: deque[tuple[float, int, int, int]] = deque(maxlen=6)
        self._throttle = Throttle()

    # -- from the pipeline (any thread) -----------------------------------------------

    def offer(self, message: Message) -> None:
        """Show ``message`` (in the order of the calls). Returns at once, from any thread."""
        frame = isinstance(message, Event) and message.array is not None
        size = 0
        if isinstance(message, Event):
            payload = message.payload
            size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
            if not frame and size >= LARGE:
                message = _without_payload(message)  # the page shows its size only
        with self._lock:
            if self._closed:
                return
            self.received += 1
            self.bytes += size
            self.frames += frame
            item = [message, frame, size]
            self._pending.append(item)
            if frame:
                self._pending_frames.append(item)
                if len(self._pending_frames) > self.settings.pending_frames:
                    older = self._pending_frames.popleft()
                    older[0], older[1] = _without_payload(older[0]), False
                    self.skipped += 1
            if len(self._pending) > self.settings.items:
                dropped = self._pending.popleft()
                self.skipped_events += 1
                if dropped[1]:
                    self._pending_frames.popleft()
                    self.skipped += 1
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            with contextlib.suppress(RuntimeError):  # the server's loop is closed
                self.loop.call_soon_threadsafe(self._wake)

    def undecodable_record(self, reason: str) -> None:
        """Count a message of the source that could not be read (any thread)."""
        with self._lock:
            self.undecodable += 1
            self.problem = reason

    # -- on the hub's loop ------------------------------------------------------------

    def _wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        """Publish what :meth:`offer` queued: all of it at once, then (with ``max_fps``)
        wait a frame's time before the next batch, so that the hub works in at most
        ``max_fps`` batches a second, whatever the pipeline's rate."""
        pause = 1 / self.settings.max_fps if self.settings.max_fps else 0.0
        while True:
            with self._lock:
                if not self._pending:
                    self._scheduled = False
                    return
                batch = list(self._pending)
                self._pending.clear()
                self._pending_frames.clear()
            try:
                self._show(batch)
            except Exception:  # a bug of the viewer must not stop it
                log.exception("view: could not show %d messages", len(batch))
            await asyncio.sleep(pause)  # the clients' writers go meanwhile

    def _show(self, batch: list[list[Any]]) -> None:
        """Publish a batch, in order. With ``max_fps``, only its newest frame is prepared
        (the others are sent without their image: ``skipped``), and with ``max_rate``, a
        batch larger than a frame's share of it keeps its Starts, Stops and newest
        messages (the others are not shown: ``skipped_events``)."""
        fps, rate = self.settings.max_fps, self.settings.max_rate
        if fps and rate and len(batch) > max(1, int(rate / fps)):
            budget = max(1, int(rate / fps))
            cut = len(batch) - budget
            kept = [item for item in batch[:cut] if not isinstance(item[0], Event)]
            dropped = cut - len(kept)
            frames = sum(1 for item in batch[:cut] if item[1])
            with self._lock:
                self.skipped_events += dropped
                self.skipped += frames
            batch = kept + batch[cut:]
        newest = max((i for i, item in enumerate(batch) if item[1]), default=-1)
        for index, (message, image, size) in enumerate(batch):
            if image and fps and index != newest:
                image = False
                with self._lock:
                    self.skipped += 1
            self.publish(message, image, size)

    def publish(
        self, message: Message, image: bool = True, size: int | None = None
    ) -> Outgoing | None:
        """Number ``message``, pack it, keep it and queue it for every client (on the
        hub's loop; ``image``: False when its frame is to be skipped; ``size``: its
        payload's, when it was let go). None: a message with this id was shown already
        (counted in ``duplicates``)."""
        if message.id in self._seen:
            self.duplicates += 1
            return None
        self._seen[message.id] = None
        if len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        self.seq += 1
        header: dict[str, Any] = {"type": message.kind, "seq": self.seq}
        header["message"] = describe(message, size)
        run = self._runs.get(message.stream)
        if run is None or isinstance(message, Start):
            run = self._runs[message.stream] = RunSeen()
            while len(self._runs) > RUNS:
                self._runs.popitem(last=False)
        self._runs.move_to_end(message.stream)
        self._current = message.stream
        body: bytes | memoryview = b""
        if isinstance(message, Event):
            run.events += 1
            run.saw(message.seq)
            if DEAD_LETTER in message.metadata:
                self.dead_letters += 1
            if message.array is not None:
                run.frames += 1
                if not image:
                    header["image_skipped"] = True
                elif self.clients:
                    body = self._picture(message, header)
        out = Outgoing(header, body)
        if isinstance(message, Start):
            run.start, run.next_seq = out, message.seq + 1
        elif isinstance(message, Stop):
            run.saw(message.seq)
            run.stop = out
        elif message.array is not None and image:
            self._latest = (out, message)
        self.recent.add(out)
        for client in self.clients:
            client.queue.put(out)
        return out

    def _picture(self, message: Event, header: dict[str, Any]) -> bytes | memoryview:
        """The frame of ``message`` reduced to the largest view a client asked for (its
        description goes in ``header``); empty, with ``image_error``, when it cannot be."""
        view = max((c.max_size for c in self.clients), default=self.settings.max_size)
        try:
            made = picture(message.to_array(), min(view, self.settings.max_size))
        except Exception as exc:
            self.image_errors += 1
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            header["image_error"] = reason
            self._throttle(log, logging.WARNING, "image", "view: cannot show a frame: %s", reason)
            return b""
        header["image"] = made.header()
        return made.data

    def join(self, max_size: int, resume: int | None = None, epoch: str | None = None) -> Client:
        """A new client, its queue filled with what it must see first: ``hello``, then
        (resuming from ``resume``, when this is the ``epoch`` it was connected to) what
        came from there on while it is still kept; else the Start and Stop of the last
        runs, the current run's events that are kept (without their frames) and the
        newest frame."""
        client = Client(ClientQueue(self.settings.frames, self.settings.items), max_size)
        self.clients.add(client)
        first = self.recent.first or self.seq + 1
        resumed = resume is not None and epoch == self.epoch and 0 < resume <= self.seq + 1
        hello: dict[str, Any] = {
            "type": "hello",
            "epoch": self.epoch,
            "seq": self.seq,
            "resumed": resumed,
            "missed": max(0, first - resume) if resumed and resume is not None else 0,
            "max_size": min(max_size, self.settings.max_size),
        }
        client.queue.put(Outgoing(hello))
        if resumed and resume is not None:
            for out in self.recent.since(resume):
                client.queue.put(out)
            return client
        chosen: dict[int, Outgoing] = {}
        for run in self._runs.values():
            for kept in (run.start, run.stop):
                if kept is not None:
                    chosen[kept.seq] = kept
        current = self._current
        for out in self.recent:
            if out.kind == "event" and out.header["message"]["stream"] == current:
                chosen[out.seq] = out.without_image()
        latest = self._latest_picture(client)
        if latest is not None:
            chosen[latest.seq] = latest
        for seq in sorted(chosen):
            client.queue.put(chosen[seq])
        return client

    def _latest_picture(self, client: Client) -> Outgoing | None:
        """The newest frame, reduced for ``client`` (None: no frame yet)."""
        if self._latest is None:
            return None
        out, message = self._latest
        if out.image:
            return out
        header = {k: v for k, v in out.header.items() if k not in ("image", "image_dropped")}
        body = self._picture(message, header)
        made = Outgoing(header, body)
        if made.image:
            self._latest = (made, message)
        return made

    def leave(self, client: Client) -> None:
        """Forget ``client``."""
        self.clients.discard(client)

    def sample(self) -> None:
        """Note the counters now, for the rates (the server calls this every
        ``status_interval``)."""
        self._samples.append((time.monotonic(), self.received, self.frames, self.bytes))

    def status(self, client: Client | None = None) -> dict[str, Any]:
        """Counters and rates: messages ``received``, ``frames``, payload ``bytes``,
        ``messages_per_s``, ``frames_per_s``, ``mb_per_s`` (10^6 bytes, over the last
        seconds); ``skipped`` (frames the hub sent without image: beyond ``max_fps`` or
        it fell behind), ``skipped_events`` (messages it did not show: beyond
        ``max_rate`` or it fell behind),
        ``dropped_frames`` / ``dropped_events`` (this client's: it fell behind),
        ``clients``, ``dead_letters``, ``undecodable`` (and the last ``problem``),
        ``image_errors``, ``duplicates`` (messages seen again, shown once), ``lost``
        (what the source knows it lost, when it knows), and
        ``run``: the current run's ``events``, ``frames``, ``seq_gaps``."""
        rates = {"messages_per_s": 0.0, "frames_per_s": 0.0, "mb_per_s": 0.0}
        if len(self._samples) >= 2:
            (t0, m0, f0, b0), (t1, m1, f1, b1) = self._samples[0], self._samples[-1]
            if t1 > t0:
                rates = {
                    "messages_per_s": round((m1 - m0) / (t1 - t0), 2),
                    "frames_per_s": round((f1 - f0) / (t1 - t0), 2),
                    "mb_per_s": round((b1 - b0) / (t1 - t0) / 1e6, 3),
                }
        lost = 0
        for counter in self.counters:
            try:
                lost += int(counter().get("lost", 0))
            except Exception:  # a source's counter must not break the page
                log.debug("view: a source counter failed", exc_info=True)
        run = self._runs.get(self._current)
        out: dict[str, Any] = {
            "type": "status",
            "seq": self.seq,
            "received": self.received,
            "frames": self.frames,
            "bytes": self.bytes,
            **rates,
            "skipped": self.skipped,
            "skipped_events": self.skipped_events,
            "clients": len(self.clients),
            "dead_letters": self.dead_letters,
            "undecodable": self.undecodable,
            "problem": self.problem,
            "image_errors": self.image_errors,
            "duplicates": self.duplicates,
            "lost": lost,
            "run": run.summary(self._current) if run is not None else None,
        }
        if client is not None:
            out["dropped_frames"] = client.queue.dropped_frames
            out["dropped_events"] = client.queue.dropped_events
        return out

    def close(self) -> None:
        """Take nothing more (:meth:`offer` returns without doing anything)."""
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._pending_frames.clear()
