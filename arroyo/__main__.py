"""``python -m arroyo``: the same as the ``arroyo`` command."""

from arroyo.cli import main

main()
