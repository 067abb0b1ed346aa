"""Who may read the viewer: its own page, scripts, and the pages ``origins`` names.

A browser lets any page open a WebSocket to any address, the viewer's on 127.0.0.1
included, and sends the page's ``Origin`` with it: a site the user has open could read
the stream (cross-site WebSocket hijacking). So a request that comes with an ``Origin``
must come from the viewer's own page (its ``Host``) or from one of ``origins``. A
request without one (a script, ``arroyo.view.client``) is a program, not a page, and is
served.

A viewer that serves this machine only (a loopback address) also refuses a ``Host``
that is not this machine (nor the name of one of ``origins``, as a proxy in front of
it may pass on): a page whose name an attacker's DNS points at 127.0.0.1 would otherwise
be same-origin with the viewer (DNS rebinding). ``origins`` ``*`` turns both checks off.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def _split(url: str) -> SplitResult:
    """``urlsplit``, with nothing in it for what cannot be split (``[::1`` without its
    bracket): such a name is nobody's, and refused."""
    try:
        return urlsplit(url)
    except ValueError:
        return urlsplit("")


def loopback(name: str) -> bool:
    """True for a name of this machine only: ``localhost``, ``127.x.x.x``, ``::1``."""
    return name == "localhost" or name == "::1" or name.startswith("127.")


def parse_origins(text: str) -> frozenset[str]:
    """The ``origins`` option: comma-separated ``scheme://host[:port]``, or ``*`` (any)."""
    return frozenset(o.strip().rstrip("/").lower() for o in text.split(",") if o.strip())


def refusal(
    host: str | None, origin: str | None, served_on: str, origins: frozenset[str]
) -> str | None:
    """Why a request with these ``Host`` and ``Origin`` headers is refused, or None.
    ``served_on``: the address the viewer listens on; ``origins``: as
    :func:`parse_origins` makes them."""
    if loopback(served_on) and "*" not in origins:
        name = _split(f"//{host}").hostname if host else None
        named = {_split(o).hostname for o in origins}  # a proxy that passes its name on
        if name is None or not (loopback(name) or name in named):
            return (
                f"Host {host!r} is not this machine, and this viewer serves this machine "
                f"only ({served_on}): refused"
            )
    if origin is None or "*" in origins:
        return None
    if origin.rstrip("/").lower() in origins:
        return None
    if host is not None and _split(origin).netloc.lower() == host.lower():
        return None  # the viewer's own page
    return (
        f"a page of {origin} may not read this viewer (only its own page may); "
        "allow it with the view option origins"
    )
