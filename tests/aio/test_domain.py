"""The asyncio Repository and catch-up subscription, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

import chronik.aio
from chronik import ManualClock, NewEvent, RecordedEvent
from chronik.aio import AsyncUnitOfWork, CatchUpSubscription, Repository
from chronik.errors import AggregateNotFound, HistoricalAggregate, WrongExpectedVersion
from tests.domain.accounts import Account, InsufficientFunds

pytestmark = pytest.mark.anyio


async def test_load_save_time_travel_and_snapshots(url: str) -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with await chronik.aio.open_store(url, clock=clock) as store:
        repository = Repository(store)
        account = Account("1")
        account.open("ann")
        account.deposit(10, occurred_at=datetime(2025, 6, 1, tzinfo=UTC))
        await repository.save(account)
        noon = clock()
        clock.advance(timedelta(hours=1))
        for amount in (5, 7, 9):
            account.deposit(amount)
            await repository.save(account)  # Account snapshots every 3 events
        assert account.version == 4
        assert await store.load_snapshot("account-1", schema_version=1) is not None

        loaded = await repository.load(Account, "1")
        assert (loaded.state.balance, loaded.version) == (31, 4)
        assert (await repository.load(Account, "1", use_snapshots=False)).state == loaded.state
        assert (await repository.load(Account, "1", version=1)).state.balance == 10
        assert (await repository.load(Account, "1", recorded_at=noon)).state.balance == 10
        business = await repository.load(Account, "1", occurred_at=datetime(2025, 12, 31, tzinfo=UTC))
        assert business.state.movements == [10]
        with pytest.raises(HistoricalAggregate):
            await repository.save(business)
        with pytest.raises(AggregateNotFound):
            await repository.load(Account, "nobody")

        stale = await repository.load(Account, "1")
        account.withdraw(1)
        await repository.save(account)
        stale.withdraw(2)
        with pytest.raises(WrongExpectedVersion):
            await repository.save(stale)
        assert stale.pending  # kept for a retry


async def test_execute_retries_concurrent_commands_on_fresh_state(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        repository = Repository(store)
        await repository.execute(Account, "7", lambda a: a.open("bo"), create=True)
        conflicts: list[int] = []

        async def deposit(account: Account) -> None:
            await asyncio.sleep(0)  # a coroutine command: the others load the same version meanwhile
            account.deposit(1)

        def note(conflict: WrongExpectedVersion, attempt: int) -> None:
            conflicts.append(attempt)

        await asyncio.gather(
            *(repository.execute(Account, "7", deposit, attempts=30, on_conflict=note) for _ in range(10))
        )
        final = await repository.load(Account, "7")
        assert final.state.balance == 10 and final.version == 10
        assert conflicts, "ten concurrent commands on one account never conflicted"
        with pytest.raises(InsufficientFunds):
            await repository.execute(Account, "7", lambda a: a.withdraw(100))


async def test_a_save_that_depends_on_another_aggregate_fails_if_it_changed(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        repository = Repository(store)
        for name in ("a", "b"):
            await repository.execute(Account, name, lambda acc: acc.open("x"), create=True)
        source = await repository.load(Account, "a")
        target = await repository.load(Account, "b")
        await repository.execute(Account, "a", lambda acc: acc.deposit(1))  # changes after it was read
        target.deposit(3)
        with pytest.raises(WrongExpectedVersion):
            await repository.save(target, depends_on=[source])
        assert (await repository.load(Account, "b")).version == 0


async def test_a_subscription_catches_up_then_follows_with_exactly_once_effects(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        for n in range(5):
            await store.append(f"order-{n}", NewEvent(type="Placed", data={"n": n}))
        handled: list[int] = []

        async def handle(event: RecordedEvent, uow: AsyncUnitOfWork) -> None:
            if event.type == "Placed":
                handled.append(event.data["n"])
                await uow.append(f"invoice-{event.data['n']}", NewEvent(type="Invoiced", data={}))

        subscription = CatchUpSubscription(store, "invoicer", handle, categories=["order"], batch_size=2)
        assert await subscription.run_until_caught_up() == 5
        assert await store.load_checkpoint("subscription:invoicer") == await subscription.position()

        running = asyncio.create_task(subscription.run())
        await store.append("order-9", NewEvent(type="Placed", data={"n": 9}))
        for _ in range(200):
            if 9 in handled:
                break
            await asyncio.sleep(0.01)
        subscription.stop()
        await asyncio.wait_for(running, 5)
        assert handled == [0, 1, 2, 3, 4, 9]
        assert await store.stream_version("invoice-9") == 0

        # A new subscription of the same name resumes after the checkpoint: nothing twice.
        again = CatchUpSubscription(store, "invoicer", handle, categories=["order"])
        assert await again.run_until_caught_up() == 0
        await again.run(idle_timeout=0.1)
        assert handled == [0, 1, 2, 3, 4, 9]


async def test_a_failing_handler_rolls_back_its_batch(url: str) -> None:
    async with await chronik.aio.open_store(url) as store:
        await store.append("order-1", NewEvent(type="Placed", data={}))

        async def handle(event: RecordedEvent, uow: AsyncUnitOfWork) -> None:
            await uow.append("invoice-1", NewEvent(type="Invoiced", data={}))
            raise RuntimeError("the printer jammed")

        subscription = CatchUpSubscription(store, "invoicer", handle)
        with pytest.raises(RuntimeError):
            await subscription.poll()
        assert await store.stream_version("invoice-1") is None
        assert await store.load_checkpoint("subscription:invoicer") is None
