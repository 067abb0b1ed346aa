"""Order and acknowledgement, on every broker (see brokers.py for who meets what).

- A Block forwards interleaved runs in the order the broker's publisher sent them.
- What a Block acknowledged is not delivered again: the group's next listener gets only
  what came after.
"""

from __future__ import annotations

from collections.abc import Callable

from arroyo.brokers import open_listener
from arroyo.runtime import Block
from arroyo.testing import Recorder, make_run, publish_all
from tests.contract.adapters import Broker
from tests.contract.harness import interleaved, run_block


class TestOrder:
    concern = "order"

    async def test_a_block_forwards_interleaved_runs_in_order(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source = await broker.source()
        sent = interleaved(3, 20)
        out = Recorder()
        listener = open_listener(broker.listener_url(source, unique_name("group")))
        block = Block(listener, None, [out], max_messages=len(sent))
        stats = await run_block(block, publish_all(broker.publisher_url(source), sent))
        assert out.published == sent
        assert (stats.received, stats.published) == (len(sent), len(sent))


class TestAcknowledgement:
    concern = "acknowledgement"

    async def test_what_a_block_acknowledged_is_not_delivered_again(
        self, broker: Broker, unique_name: Callable[[str], str]
    ) -> None:
        source, group = await broker.source(), unique_name("group")
        sent = make_run(30)
        await publish_all(broker.publisher_url(source), sent)
        out = Recorder()
        first = Block(open_listener(broker.listener_url(source, group)), None, [out])
        first.max_messages = len(sent)
        stats = await run_block(first)
        assert out.published == sent
        assert stats.acknowledged == len(sent)
        # Everything was acknowledged: the group's next listener gets only what comes next.
        later = make_run(1, stream="later")
        await publish_all(broker.publisher_url(source), later)
        again = Recorder()
        second = Block(open_listener(broker.listener_url(source, group)), None, [again])
        second.max_messages = len(later)
        await run_block(second)
        assert again.published == later
