"""What only asyncio shows: many tasks on one event loop, the loop never blocked, async iterators,
cancellation, units of work per task."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

import chronik.aio
from chronik import NO_STREAM, NewEvent, RecordedEvent, WrongExpectedVersion
from chronik.aio import AsyncEventStore, ThreadedStore
from chronik.errors import ChronikError
from chronik.store.contract import UnitOfWork

pytestmark = pytest.mark.anyio


def ev(n: int = 0) -> NewEvent:
    return NewEvent(type="Ticked", data={"n": n})


class SlowClock:
    """The system clock, 3 ms late: the stores read it inside their write lock, so 100 appends to
    one stream take at least 0.3 s on the threaded stores, whoever runs them."""

    def __call__(self) -> datetime:
        time.sleep(0.003)
        return datetime.now(UTC)


async def test_the_loop_keeps_ticking_while_100_appends_run(url: str) -> None:
    """100 tasks append to one stream at once while a ticker task ticks every 2 ms. If an append
    blocked the loop (a synchronous call on the loop's thread), the ticker would stall for as long
    as the appends take (checked: with `ThreadedStore._call` made synchronous, the longest gap is
    the whole run); here its longest gap stays small."""
    threaded = not url.startswith("postgresql")
    store = await chronik.aio.open_store(url, clock=SlowClock() if threaded else None)
    threads: set[int] = set()
    if isinstance(store, ThreadedStore):

        def note_thread(uow: UnitOfWork, events: object) -> None:
            threads.add(threading.get_ident())

        store.sync.add_append_hook(note_thread)
    loop = asyncio.get_running_loop()
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(loop.time())
            await asyncio.sleep(0.002)
        ticks.append(loop.time())  # the gap up to the end counts too

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    results = await asyncio.gather(*(store.append("tick-1", ev(i)) for i in range(100)))
    elapsed = time.monotonic() - started
    stop.set()
    await ticking
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    try:
        assert sorted(r.stream_version for r in results) == list(range(100))
        assert [e.stream_version for e in await store.read_all()] == list(range(100))
        assert max(gaps) < max(0.05, elapsed / 5), f"the loop stalled {max(gaps):.3f}s in {elapsed:.3f}s"
        if threaded:
            assert elapsed > 0.3
            assert len(threads) > 1, "the appends did not run on several threads"
    finally:
        await store.close()


async def test_concurrent_tasks_race_at_one_expected_version(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        outcomes = await asyncio.gather(
            *(store.append("race-1", ev(i), NO_STREAM) for i in range(20)), return_exceptions=True
        )
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
        assert all(isinstance(o, WrongExpectedVersion) for o in outcomes if isinstance(o, BaseException))
        assert [e.stream_version for e in await store.read_stream("race-1")] == [0]


async def test_async_iterators_page_through_the_log_and_a_stream(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        for i in range(11):
            await store.append("cart-1", [ev(i), ev(i)])
            await store.append(f"order-{i % 3}", ev(i))
        log = await store.read_all()
        assert len(log) == 33
        paged: list[RecordedEvent] = []
        async for event in store.iter_all(batch_size=4):
            paged.append(event)
            if len(paged) == 1:  # written during the iteration: after the head it started at
                await store.append("late-1", ev())
        assert [e.event_id for e in paged] == [e.event_id for e in log]
        orders = [e async for e in store.iter_all(categories=["order"], batch_size=2)]
        assert [e.stream for e in orders] == [e.stream for e in log if e.category == "order"]
        stream = [e.stream_version async for e in store.iter_stream("cart-1", batch_size=5)]
        assert stream == list(range(22))
        assert [e.stream_version async for e in store.iter_stream("cart-1", from_version=20)] == [20, 21]


async def test_tail_follows_the_log_live_and_sends_heartbeats(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        await store.append("s-1", ev(0))

        async def write_later() -> None:
            for n in range(1, 4):
                await asyncio.sleep(0.05)
                await store.append("s-1", ev(n))

        writer = asyncio.create_task(write_later())
        seen: list[int] = []
        pages = 0
        async for page in store.tail(heartbeat=0.2):
            pages += 1
            if not page:
                break  # a heartbeat: idle for 0.2 s after the last write
            seen.extend(e.data["n"] for e in page)
        await writer
        assert seen == [0, 1, 2, 3]
        assert pages >= 3  # live pages, not one read at the end


async def test_a_filtered_tail_on_an_idle_log_waits_instead_of_spinning(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        reads = 0
        read_all = store.read_all

        async def counted(*args: Any, **kwargs: Any) -> list[RecordedEvent]:
            nonlocal reads
            reads += 1
            return await read_all(*args, **kwargs)

        store.read_all = counted  # type: ignore[method-assign]
        for n in range(3):  # events the filter skips: the tail must move past them, not re-read them
            await store.append(f"cart-{n}", ev(n))
        orders: list[RecordedEvent] = []

        async def follow() -> None:
            async for page in store.tail(categories=["order"], batch_size=2, heartbeat=0.3):
                if not page:
                    return
                orders.extend(page)

        following = asyncio.create_task(follow())
        await asyncio.sleep(0.05)
        await store.append("order-1", ev(7))
        await store.append("cart-9", ev(8))
        await asyncio.wait_for(following, 5)
        assert [e.stream for e in orders] == ["order-1"]
        assert reads < 10, f"{reads} reads of an idle log in 0.3 s"


async def test_a_cancelled_wait_leaves_nothing_behind(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        head = await store.head_position()
        waiting = asyncio.create_task(store.wait_for_events(head, timeout=30))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert time.monotonic() - started < 1
        # The store still works, and a new waiter is woken by an append from another task.
        again = asyncio.create_task(store.wait_for_events(head, timeout=10))
        await asyncio.sleep(0.05)
        await store.append("s-1", ev())
        assert await again is True
        assert await store.wait_for_events(await store.head_position(), timeout=0.1) is False


async def test_many_waiters_share_the_wake_up(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        head = await store.head_position()
        waiters = [asyncio.create_task(store.wait_for_events(head, timeout=10)) for _ in range(200)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await store.append("s-1", ev())
        assert await asyncio.gather(*waiters) == [True] * 200
        assert time.monotonic() - started < 2


async def test_units_of_work_are_per_task(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        async with store.transaction() as uow:
            await uow.append("s-1", ev())
            with pytest.raises(ChronikError, match="do not nest"):
                async with store.transaction():
                    pass
            with pytest.raises(ChronikError, match="do not nest"):
                await store.append("s-2", ev())
            await uow.save_checkpoint("reader", 7)
        assert await store.load_checkpoint("reader") == 7

        async def one(n: int) -> None:  # other tasks each have their own
            async with store.transaction() as uow:
                await uow.append(f"t-{n}", ev(n))

        await asyncio.gather(*(one(n) for n in range(5)))
        assert len(await store.read_all()) == 6


async def test_a_unit_of_work_rolls_back_when_its_task_is_cancelled(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        entered = asyncio.Event()

        async def work() -> None:
            async with store.transaction() as uow:
                await uow.append("s-1", ev())
                await uow.save_checkpoint("reader", 1)
                entered.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(work())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.stream_version("s-1") is None
        assert await store.load_checkpoint("reader") is None
        await store.append("s-1", ev(), NO_STREAM)  # nothing was left locked
        assert await store.stream_version("s-1") == 0


async def test_a_closed_store_refuses_calls(url: str) -> None:
    store: AsyncEventStore = await chronik.aio.open_store(url)
    await store.close()
    with pytest.raises(ChronikError, match="closed"):
        await store.append("s-1", ev())
