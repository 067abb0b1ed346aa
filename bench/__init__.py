"""Benchmarks: every path measured through Arroyo and through the raw client, same run.

``python -m bench --quick`` (about a minute) or ``python -m bench`` (longer); see
``python -m bench --help``. Results are printed as a table and written as JSON.
"""
