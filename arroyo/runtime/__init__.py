"""The broker-independent engine: listeners, operators, publishers and the Block.

Acknowledgements, retries, dead letters, backpressure and shutdown live here, once;
connectors in :mod:`arroyo.brokers` only adapt a client library to these interfaces.
"""

from arroyo.runtime.block import Block
from arroyo.runtime.listener import Intake, Listener, Raw, Received
from arroyo.runtime.offsets import OffsetTracker
from arroyo.runtime.operator import (
    BlockingOperator,
    FunctionOperator,
    Operator,
    Output,
    Passthrough,
)
from arroyo.runtime.parser import AvroParser, Parser
from arroyo.runtime.publisher import DeadLetter, PipelinedPublisher, Publisher
from arroyo.runtime.retry import RetryPolicy
from arroyo.runtime.signals import run_blocks

__all__ = [
    "AvroParser",
    "Block",
    "BlockingOperator",
    "DeadLetter",
    "FunctionOperator",
    "Intake",
    "Listener",
    "OffsetTracker",
    "Operator",
    "Output",
    "Parser",
    "Passthrough",
    "PipelinedPublisher",
    "Publisher",
    "Raw",
    "Received",
    "RetryPolicy",
    "run_blocks",
]
