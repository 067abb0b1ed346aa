"""What a message librdkafka refused, or a failed delivery report, means to the runtime.

librdkafka refuses a message at once (``produce`` raises) or reports its delivery failed
later (the delivery report's error). Either becomes one
:class:`~arroyo.errors.PublishError` line naming the producer and the message, retried by
the runtime, or a :class:`~arroyo.errors.MessageTooLargeError` (a PermanentError: dead
lettered at once) saying which limit to raise. :func:`breaks` says whether a failed
delivery must stop later messages from being written (rule 2 of
:mod:`arroyo.runtime.ordering`).
"""

from __future__ import annotations

from typing import Any

import confluent_kafka as ck

from arroyo.brokers.kafka.connection import Hide, error_text
from arroyo.errors import MessageTooLargeError, PublishError


def breaks(error: Any) -> bool:
    """True for a failed delivery after which later messages must not be written: not
    one librdkafka refused for its size (dead-lettered, nothing waits for it), not one
    purged from the queue (it was not written)."""
    return bool(error.code() not in (ck.KafkaError.MSG_SIZE_TOO_LARGE, ck.KafkaError._PURGE_QUEUE))


def purged(error: Any) -> bool:
    """True for the report of a message purged from librdkafka's queue: never written."""
    return bool(error.code() == ck.KafkaError._PURGE_QUEUE)


def refusal(
    name: str, limit: str, hide: Hide, exc: BaseException, size: int, what: str
) -> PublishError:
    """The error for ``what`` (``size`` bytes), which librdkafka refused at once with
    ``exc``; ``limit`` is the producer's ``message.max.bytes``."""
    error = exc.args[0] if exc.args else None
    if error is not None and error.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE:
        return MessageTooLargeError(
            f"{name}: {what} is {size} bytes, more than the producer allows "
            f"(message.max.bytes={limit}). To send it, raise the producer's "
            "message.max.bytes (a setting next to the publisher's URL) and the topic's "
            "max.message.bytes (or the broker's message.max.bytes); consumers of large "
            "messages may need a larger fetch.max.bytes too"
        )
    return PublishError(f"{name}: cannot produce {what}: {hide(error_text(exc))}")


def failure(name: str, limit: str, hide: Hide, error: Any, msg: Any) -> PublishError:
    """The error for the failed delivery report ``error`` of ``msg`` (None when the
    report has no message)."""
    where = f"{msg.topic()}[{msg.partition()}]" if msg is not None else name
    if error.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE:
        size = len(msg) if msg is not None else "?"
        return MessageTooLargeError(
            f"{name}: the broker refused a message of {size} bytes for {where} as "
            "too large: raise the topic's max.message.bytes (or the broker's "
            f"message.max.bytes); the producer's message.max.bytes is {limit}"
        )
    return PublishError(f"{name}: delivery to {where} failed: {error.name()}: {hide(error.str())}")
