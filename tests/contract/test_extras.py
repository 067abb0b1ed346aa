"""A missing client library names the extra to install, on every broker that needs one
(see brokers.py).

In a Python process where the broker's client cannot be imported (as when its extra
was not installed), opening a listener or a publisher for the broker's URL raises
MissingDependencyError naming the missing package and saying ``pip install
'arroyo-streams[<extra>]'``; ``arroyo run`` on a config using the broker fails before
anything starts, in one line naming the place in the config and what to install.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.contract.adapters import Broker
from tests.contract.harness import one_block, one_line, run_python

WITHOUT_CLIENT = """
import importlib.abc, json, sys

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())

from arroyo.brokers import open_listener, open_publisher
from arroyo.errors import MissingDependencyError

errors = []
for make, url in ((open_listener, LISTENER), (open_publisher, PUBLISHER)):
    try:
        make(url)
    except MissingDependencyError as exc:
        errors.append(str(exc))
    else:
        errors.append(f"no error from {make.__name__}")
print(json.dumps(errors))
sys.stdout.flush()
if any(text.startswith("no error") for text in errors):
    sys.exit(1)  # the client was there: arroyo run would run

from arroyo.cli import main
sys.argv = ["arroyo", "run", CONFIG]
main()
"""


class TestExtras:
    concern = "extras"

    async def test_a_missing_client_names_the_extra_to_install(
        self, broker: Broker, unique_name: Callable[[str], str], tmp_path: Path
    ) -> None:
        declared = broker.declared
        assert declared.extra is not None and declared.clients
        source = await broker.source()
        listener, publisher = broker.listener_url(source, "g"), broker.publisher_url(source)
        config = tmp_path / "pipeline.yaml"
        config.write_text(yaml.safe_dump(one_block({"url": listener})))
        code = textwrap.dedent(WITHOUT_CLIENT)
        for name, value in (
            ("BLOCKED", set(declared.clients)),
            ("LISTENER", listener),
            ("PUBLISHER", publisher),
            ("CONFIG", str(config)),
        ):
            code = f"{name} = {value!r}\n" + code
        done = await run_python("-c", code, folder=tmp_path)
        install = f"pip install 'arroyo-streams[{declared.extra}]'"
        errors = json.loads(done.stdout.splitlines()[0]) if done.stdout else done.stderr
        assert isinstance(errors, list), errors
        for text in errors:
            assert install in text, text
            assert f"'{declared.clients[0]}'" in text, text  # the package that is missing
        assert done.returncode == 2, done.stderr
        line = one_line(done)
        assert f"{config}: blocks[0] (intake).listener" in line, line
        assert install in line, line
