"""The contract suite: one module per concern, each a test class written once against the
broker interface of ``adapters.py`` and run on every broker that meets its concern. The
concern x broker table, and why a broker is left out of a concern, are in ``brokers.py``.
"""
