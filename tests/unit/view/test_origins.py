"""Who may read the viewer: its own page and programs, not another site's page (cross-site
WebSocket hijacking), nor a page reaching 127.0.0.1 under another name (DNS rebinding)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import aiohttp
import pytest

from arroyo.view.origins import parse_origins, refusal
from arroyo.view.server import acquire, release
from arroyo.view.settings import ViewSettings

NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("host", "origin", "served_on", "origins"),
    [
        ("127.0.0.1:8080", None, "127.0.0.1", NONE),  # a program
        ("127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1", NONE),  # its own page
        ("localhost:8080", "http://localhost:8080", "127.0.0.1", NONE),
        ("[::1]:8080", "http://[::1]:8080", "::1", NONE),
        ("beamline:8080", "http://beamline:8080", "0.0.0.0", NONE),  # served to others
        ("127.0.0.1:8080", "https://view.lab.example", "127.0.0.1", {"https://view.lab.example"}),
        ("view.lab.example", "https://view.lab.example", "127.0.0.1", {"https://view.lab.example"}),
        ("evil.example:8080", "http://evil.example:8080", "127.0.0.1", {"*"}),
    ],
)
def test_served(host: str, origin: str | None, served_on: str, origins: frozenset[str]) -> None:
    assert refusal(host, origin, served_on, frozenset(origins)) is None


@pytest.mark.parametrize(
    ("host", "origin", "served_on", "problem"),
    [
        ("127.0.0.1:8080", "https://evil.example", "127.0.0.1", "a page of https://evil"),
        ("127.0.0.1:8080", "null", "127.0.0.1", "a page of null may not"),
        ("beamline:8080", "https://evil.example", "0.0.0.0", "a page of https://evil"),
        ("evil.example:8080", "http://evil.example:8080", "127.0.0.1", "'evil.example:8080' is"),
        (None, None, "127.0.0.1", "Host None is not this machine"),
        ("[::1", None, "127.0.0.1", "Host '[::1' is not this machine"),
        ("127.0.0.1:8080", "http://[::1", "127.0.0.1", "a page of http://[::1 may not"),
    ],
)
def test_refused(host: str | None, origin: str | None, served_on: str, problem: str) -> None:
    found = refusal(host, origin, served_on, NONE)
    assert found is not None and problem in found


def test_origins_are_a_comma_separated_list() -> None:
    assert parse_origins(" https://A.example/, http://b:81 ,") == {
        "https://a.example",
        "http://b:81",
    }
    assert parse_origins("") == set()


def status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_the_server_refuses_another_sites_page_and_another_name() -> None:
    server = await asyncio.to_thread(acquire, "127.0.0.1", 0)
    try:
        host = f"127.0.0.1:{server.port}"
        ws = f"ws://{host}/ws"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws, headers={"Origin": f"http://{host}"}) as own:
                assert not own.closed  # the viewer's own page
            async with session.ws_connect(ws) as program:
                assert not program.closed
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws, headers={"Origin": "https://evil.example"})
            assert refused.value.status == 403
        assert await asyncio.to_thread(status, server.url + "status", {}) == 200
        rebound = {"Host": f"evil.example:{server.port}"}
        assert await asyncio.to_thread(status, server.url, rebound) == 403
        assert await asyncio.to_thread(status, server.url + "status", rebound) == 403
    finally:
        await asyncio.to_thread(release, server)


async def test_origins_lets_a_proxys_page_in() -> None:
    settings = ViewSettings(origins="https://view.lab.example")
    server = await asyncio.to_thread(acquire, "127.0.0.1", 0, settings)
    try:
        ws = f"ws://127.0.0.1:{server.port}/ws"
        async with aiohttp.ClientSession() as session:
            headers = {"Origin": "https://view.lab.example"}
            async with session.ws_connect(ws, headers=headers) as proxied:
                assert not proxied.closed
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(ws, headers={"Origin": "https://evil.example"})
    finally:
        await asyncio.to_thread(release, server)
