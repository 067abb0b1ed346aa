"""The viewer's options: ``view://HOST:PORT?max_size=1024&frames=4...`` or YAML next to it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from arroyo.brokers.settings import Settings


class ViewSettings(Settings):
    """How much the viewer holds, and how large a frame it sends.

    - ``max_size``: a frame is reduced until it has at most this many pixels on each side
      (the page's view; see :mod:`arroyo.view.image`).
    - ``frames``: frames queued per client (a slower client gets the newest, the others
      are counted as dropped); ``items``: messages queued per client in all.
    - ``buffer``: messages kept for clients that reconnect with ``?from=SEQ``;
      ``buffer_mb``: megabytes of frames among them (older ones are kept without their
      frame). A page that joins late gets the run's Start and the newest frame whatever
      these are.
    - ``pending_frames``: frames taken from the pipeline and not yet prepared for the
      clients; a newer one replaces the oldest beyond (counted as skipped): the viewer
      falls behind, never the pipeline.
    - ``max_fps``: frames prepared per second at most (the newest; the others are sent
      without their image and counted as skipped); 0: every frame, and every message.
    - ``max_rate``: messages shown per second at most (a run's Starts and Stops, and the
      newest; the others are counted as skipped): a viewer takes little from a pipeline
      of small, fast messages. 0: no limit.
    - ``status_interval``: seconds between the counters sent to each page.
    - ``origins``: pages of other sites allowed to read the stream, comma-separated
      ``scheme://host[:port]`` (a proxy's address), or ``*`` (any page, any ``Host``). By
      default only the viewer's own page may, and a viewer on a loopback address answers
      only to this machine's names (:mod:`arroyo.view.origins`).
    """

    broker: ClassVar[str] = "view"

    max_size: int = Field(default=1024, ge=16, le=8192)
    frames: int = Field(default=4, ge=1, le=1024)
    items: int = Field(default=2048, ge=16)
    buffer: int = Field(default=1024, ge=1)
    buffer_mb: float = Field(default=64.0, ge=0)
    pending_frames: int = Field(default=4, ge=1)
    max_fps: float = Field(default=10.0, ge=0)
    max_rate: float = Field(default=1000.0, ge=0)
    status_interval: float = Field(default=0.5, gt=0)
    origins: str = ""
