"""The hub: takes messages from any thread without waiting, numbers them, and gives
each client what it must see (late joiners the run's Start, reconnections what they
missed)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from arroyo.message import ArrayInfo, Event, Run, Start, Stop
from arroyo.view.hub import Client, Hub
from arroyo.view.settings import ViewSettings
from arroyo.view.wire import Outgoing, unpack


def frame(value: int, shape: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.full(shape, value, dtype="<u2")


def taken(client: Client) -> list[tuple[dict[str, Any], bytes]]:
    out = []
    while (item := client.queue.get_nowait()) is not None:
        out.append(unpack(item.data))
    return out


async def settled(hub: Hub, seq: int, until: Callable[..., Any]) -> None:
    await until(lambda: hub.seq >= seq, what=f"the hub numbered {seq} messages")


async def test_messages_offered_from_another_thread_are_numbered_in_order(until) -> None:
    hub = Hub(ViewSettings(max_fps=0), asyncio.get_running_loop())  # every message
    client = hub.join(1024)
    run = Run("scan-1")
    messages = [run.start({"sample": "Si"}), *(run.event({"i": i}) for i in range(500)), run.stop()]

    def offer_all() -> None:
        for message in messages:
            hub.offer(message)

    thread = threading.Thread(target=offer_all)
    thread.start()
    thread.join()  # offer() returned for all 502 while the hub's loop was busy here
    await settled(hub, 502, until)
    got = taken(client)
    assert got[0][0]["type"] == "hello"
    assert [h["seq"] for h, _ in got[1:]] == list(range(1, 503))
    assert [h["message"]["id"] for h, _ in got[1:]] == [m.id for m in messages]
    assert hub.received == 502


async def test_a_frame_is_reduced_to_the_largest_view_a_client_asked_for(until) -> None:
    hub = Hub(ViewSettings(max_size=64), asyncio.get_running_loop())
    small, large = hub.join(32), hub.join(4096)
    hub.offer(Run("r").array_event(frame(7, (128, 96))))
    await settled(hub, 1, until)
    for client in (small, large):
        header, body = taken(client)[-1]
        assert header["image"]["factor"] == 2  # 64 (the server's limit) for both
        assert (header["image"]["height"], header["image"]["width"]) == (64, 48)
        assert (np.frombuffer(body, "<u2") == 7).all()


async def test_a_late_joiner_gets_the_start_the_runs_events_and_the_newest_frame(until) -> None:
    hub = Hub(ViewSettings(), asyncio.get_running_loop())
    old = Run("old")
    run = Run("scan-2")
    messages = [old.start({"n": 0}), old.stop()]
    messages += [run.start({"sample": "Si"})]
    messages += [run.array_event(frame(i), {"i": i}) for i in range(5)]
    for message in messages:
        hub.offer(message)
    await settled(hub, len(messages), until)
    assert hub.clients == set()  # nobody watched: no frame was reduced
    late = taken(hub.join(1024))
    kinds = [(h["type"], h.get("seq"), bool(body)) for h, body in late]
    assert kinds == [
        ("hello", 8, False),
        ("start", 1, False),
        ("stop", 2, False),
        ("start", 3, False),
        ("event", 4, False),
        ("event", 5, False),
        ("event", 6, False),
        ("event", 7, False),
        ("event", 8, True),  # the newest frame, reduced now
    ]
    assert late[3][0]["message"]["data"] == {"sample": "Si"}
    assert (np.frombuffer(late[-1][1], "<u2") == 4).all()


async def test_a_client_resuming_gets_what_it_missed_while_it_is_kept(until) -> None:
    hub = Hub(ViewSettings(buffer=10), asyncio.get_running_loop())
    run = Run("scan-3")
    hub.offer(run.start())
    for i in range(5):
        hub.offer(run.event({"i": i}))
    await settled(hub, 6, until)
    resumed = taken(hub.join(1024, resume=4, epoch=hub.epoch))
    assert resumed[0][0]["resumed"] is True and resumed[0][0]["missed"] == 0
    assert [h["seq"] for h, _ in resumed[1:]] == [4, 5, 6]
    for i in range(20):
        hub.offer(run.event({"i": i}))
    await settled(hub, 26, until)
    late = taken(hub.join(1024, resume=7, epoch=hub.epoch))
    assert late[0][0]["missed"] == 10  # 7..16 are no longer kept
    assert [h["seq"] for h, _ in late[1:]] == list(range(17, 27))
    other = taken(hub.join(1024, resume=7, epoch="another-server"))
    assert other[0][0]["resumed"] is False  # a restarted server: starts afresh
    assert [h["type"] for h, _ in other][:2] == ["hello", "start"]


async def test_the_hub_skips_frames_it_has_no_time_for_never_the_pipeline(until) -> None:
    hub = Hub(ViewSettings(pending_frames=2, max_fps=0), asyncio.get_running_loop())
    client = hub.join(1024)
    run = Run("burst")
    for i in range(10):  # all before the hub's loop gets a turn
        hub.offer(run.array_event(frame(i), {"i": i}))
    assert hub.skipped == 8
    await settled(hub, 10, until)
    got = taken(client)[1:]
    assert [h["message"]["metadata"]["i"] for h, _ in got] == list(range(10))
    assert [bool(body) for _, body in got] == [False] * 8 + [True, True]
    assert all(h.get("image_skipped") for h, _ in got[:8])


async def test_the_hub_shows_the_newest_frame_of_what_came_since_its_last_batch(
    until,
) -> None:
    hub = Hub(ViewSettings(pending_frames=100, max_fps=20), asyncio.get_running_loop())
    client = hub.join(1024)
    run = Run("fast")
    for i in range(10):  # all at once: far more than 20 a second
        hub.offer(run.array_event(frame(i), {"i": i}))
    await settled(hub, 10, until)
    hub.offer(run.array_event(frame(10), {"i": 10}))  # the next batch, 1/20 s later
    await settled(hub, 11, until)
    got = taken(client)[1:]
    assert [h["message"]["metadata"]["i"] for h, _ in got] == list(range(11))
    assert [bool(body) for _, body in got] == [False] * 9 + [True, True]
    assert (np.frombuffer(got[9][1], "<u2") == 9).all()
    assert hub.skipped == 9 and hub.skipped_events == 0


async def test_beyond_max_rate_the_newest_messages_and_every_start_and_stop_are_shown(
    until,
) -> None:
    hub = Hub(ViewSettings(max_fps=10, max_rate=50), asyncio.get_running_loop())
    client = hub.join(1024)
    run = Run("many")
    messages = [run.start(), *(run.event({"i": i}) for i in range(20)), run.stop()]
    for message in messages:  # all at once: a batch may show 50 / 10 = 5
        hub.offer(message)
    await settled(hub, 6, until)
    got = [h for h, _ in taken(client)[1:]]
    # The Start (older than the 5 newest, but a run's Start is always shown), then the
    # 5 newest: events 16 to 19 (seq 17 to 20) and the Stop.
    assert [h["message"]["seq"] for h in got] == [0, 17, 18, 19, 20, 21]
    assert [h["type"] for h in got] == ["start", "event", "event", "event", "event", "stop"]
    assert hub.status()["skipped_events"] == 16


async def test_a_message_seen_again_is_shown_once(until) -> None:
    hub = Hub(ViewSettings(), asyncio.get_running_loop())
    run = Run("twice")
    start = run.start()
    for message in (start, start, run.event(), start):
        hub.offer(message)
    await until(lambda: hub.duplicates == 2)
    assert hub.seq == 2 and hub.status()["duplicates"] == 2


async def test_seq_gaps_of_a_run_are_counted(until) -> None:
    hub = Hub(ViewSettings(), asyncio.get_running_loop())
    hub.offer(Start(stream="gappy", seq=0))
    for seq in (1, 2, 5, 6):
        hub.offer(Event({"i": seq}, stream="gappy", seq=seq))
    hub.offer(Stop(stream="gappy", seq=9))
    await settled(hub, 6, until)
    assert hub.status()["run"] == {
        "stream": "gappy",
        "events": 4,
        "frames": 0,
        "seq_gaps": 4,  # 3, 4 and 7, 8
        "stopped": True,
    }


async def test_a_frame_that_cannot_be_read_is_shown_without_image(until) -> None:
    hub = Hub(ViewSettings(max_fps=0), asyncio.get_running_loop())
    client = hub.join(1024)
    broken = Event({"i": 0}, b"\x00" * 3, array=ArrayInfo("<u2", (4, 4)), stream="s", seq=1)
    hub.offer(broken)
    hub.offer(Run("s").array_event(frame(1)))
    await settled(hub, 2, until)
    got = taken(client)[1:]
    assert "payload has 3 bytes" in got[0][0]["image_error"] and got[0][1] == b""
    assert got[1][1] != b""
    assert hub.image_errors == 1


async def test_frames_kept_for_reconnections_are_bounded_in_bytes(until) -> None:
    size = 64 * 64 * 2
    settings = ViewSettings(buffer=100, buffer_mb=3.5 * size / 1e6, pending_frames=100, max_fps=0)
    hub = Hub(settings, asyncio.get_running_loop())
    hub.join(1024)
    run = Run("kept")
    for i in range(10):
        hub.offer(run.array_event(frame(i, (64, 64))))
    await settled(hub, 10, until)
    kept = list(hub.recent)
    assert len(kept) == 10
    assert [item.image for item in kept] == [False] * 7 + [True] * 3
    assert hub.recent.image_bytes == sum(item.size for item in kept if item.image)


async def test_rates_come_from_samples_and_a_closed_hub_takes_nothing(until) -> None:
    hub = Hub(ViewSettings(), asyncio.get_running_loop())
    hub.sample()
    run = Run("rate")
    for i in range(4):
        hub.offer(run.array_event(frame(i, (16, 16))))
    await settled(hub, 4, until)
    hub._samples.append((hub._samples[0][0] + 2.0, hub.received, hub.frames, hub.bytes))
    status = hub.status()
    assert status["frames_per_s"] == 2.0 and status["mb_per_s"] == round(4 * 512 / 2 / 1e6, 3)
    hub.close()
    hub.offer(run.event())
    assert hub.received == 4


def test_outgoing_without_image_is_made_once() -> None:
    out = Outgoing({"type": "event", "seq": 3, "image": {"width": 1}}, b"xx")
    assert out.without_image() is out.without_image()
    assert not out.without_image().image


async def test_waiting_messages_hold_no_large_payload_but_say_its_size(until) -> None:
    hub = Hub(ViewSettings(pending_frames=1, max_fps=0), asyncio.get_running_loop())
    client = hub.join(1024)
    run = Run("big")
    blob = run.event({"kind": "blob"}, b"\x01" * (1 << 20))
    hub.offer(blob)
    for i in range(3):
        hub.offer(run.array_event(frame(i, (512, 512)), {"i": i}))
    held = [item[0] for item in hub._pending]
    assert [len(m.payload) for m in held] == [0, 0, 0, 512 * 512 * 2]  # only the newest frame
    assert held[1].array is not None  # a frame let go still says it is one
    await settled(hub, 4, until)
    got = taken(client)[1:]
    assert [h["message"]["payload_size"] for h, _ in got] == [1 << 20] + [512 * 512 * 2] * 3
    assert [bool(body) for _, body in got] == [False, False, False, True]
