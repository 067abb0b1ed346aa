#!/usr/bin/env bash
# The whole test suite, from a fresh clone: install Arroyo with every extra into .venv
# (and Debian's Chromium, for the tests of the live view), start Kafka, Redis and RabbitMQ
# (compose/brokers.sh), build helm once (deploy/tools.sh), lint, type-check, run pytest.
# Extra arguments go to pytest (e.g. ./test.sh tests/unit -x). The brokers stay up
# afterwards for fast re-runs; stop them with: compose/brokers.sh down
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        # Debian keeps venv in its own package.
        apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    fi
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    # The tests of the live view (arroyo view) drive Debian's headless Chromium.
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

# Assigned first: a broker that fails to start stops the run here (set -e), where
# eval "$(...)" would go on without it and fail every broker test instead.
exports="$(compose/brokers.sh up)"
eval "$exports"

# The Helm chart's tests render it with the real helm, built once with go install and
# cached (~/.cache/arroyo/tools) like Kafka's jars.
echo "--- tools" >&2
deploy/tools.sh helm >/dev/null

echo "--- lint and types" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

echo "--- tests" >&2
.venv/bin/pytest "$@"
