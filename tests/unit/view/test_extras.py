"""Without the view extra, Arroyo still imports, and a viewer says in one line what to
install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_AIOHTTP = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "aiohttp":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Missing())
"""
HINT = "pip install 'arroyo-streams[view]'"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_AIOHTTP + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_core_and_the_view_package_import_without_aiohttp() -> None:
    result = run(
        """
        import arroyo, arroyo.cli, arroyo.config, arroyo.build
        import arroyo.view, arroyo.view.hub, arroyo.demo
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_view_publisher_in_a_config_names_the_extra() -> None:
    result = run(
        """
        from arroyo.build import build
        from arroyo.config import parse_config
        from arroyo.errors import ArroyoError
        try:
            build(parse_config("blocks: [{name: w, listener: 'memory://a', publishers: ['view://127.0.0.1:8080']}]"))
        except ArroyoError as exc:
            print(exc)
        """
    )
    assert HINT in result.stdout, result.stdout + result.stderr


def test_arroyo_view_without_aiohttp_says_so_in_one_line() -> None:
    result = run(
        """
        import sys
        from arroyo.cli import main
        sys.argv = ["arroyo", "view", "memory://frames"]
        main()
        """
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert HINT in lines[0] and "The live viewer" in lines[0]
