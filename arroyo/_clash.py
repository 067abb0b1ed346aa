"""getsentry's ``sentry-arroyo`` (a Kafka processing library) installs a package with the
same import name, ``arroyo``, into the same folder: the two cannot share an environment.
Installed together, each overwrites files of the other and imports fail in confusing
ways, so Arroyo checks for it when it is imported and says what to do."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SENTRY_FILES = ("processing/processor.py", "backends/kafka/consumer.py")
"""Files of sentry-arroyo's ``arroyo`` package that Arroyo does not have."""


def check_no_sentry_arroyo() -> None:
    """Raise ImportError when sentry-arroyo's files are in this ``arroyo`` package."""
    if any((_PACKAGE / name).exists() for name in _SENTRY_FILES):
        raise ImportError(
            f"{_PACKAGE} also holds files of 'sentry-arroyo' (getsentry's Kafka library), "
            "which installs the same import name 'arroyo': the two cannot share an "
            "environment. Use a virtual environment of Arroyo's own (python3 -m venv), "
            "or remove both there and reinstall Arroyo: pip uninstall -y sentry-arroyo "
            "arroyo-streams && pip install '.[all]'"
        )
