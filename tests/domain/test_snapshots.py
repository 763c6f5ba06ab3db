"""Snapshots are a cache: used when usable, ignored when stale or broken, never changing a result."""

from __future__ import annotations

import contextlib
import itertools
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chronik.domain import EveryNEvents, NeverSnapshot, Repository
from chronik.store import EventStore, Snapshot
from tests.domain.accounts import Account, AccountState, InsufficientFunds


def saved_one_by_one(repository: Repository, id: str, amounts: list[int]) -> None:
    account = Account(id)
    account.open("ann")
    repository.save(account)
    for amount in amounts:
        account.deposit(amount)
        repository.save(account)


def snapshot_versions(store: EventStore, stream: str, schema_version: int = 1) -> list[int]:
    versions = []
    at: int | None = None
    while (
        snapshot := store.load_snapshot(stream, schema_version=schema_version, at_or_before=at)
    ) is not None:
        versions.append(snapshot.stream_version)
        if snapshot.stream_version == 0:
            break
        at = snapshot.stream_version - 1
    return sorted(versions)


def forged(
    stream: str, version: int, json_state: str, *, schema_version: int = 1, aggregate_type: str = "Account"
) -> Snapshot:
    return Snapshot(
        stream=stream,
        stream_version=version,
        aggregate_type=aggregate_type,
        schema_version=schema_version,
        json_state=json_state,
        recorded_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("previous", "new", "expected"),
    [
        (None, 0, False),
        (None, 2, True),
        (1, 2, True),
        (2, 3, False),
        (2, 5, True),
        (4, 7, True),
        (5, 7, False),
        (5, 8, True),
    ],
)
def test_every_n_events_fires_when_a_save_crosses_a_multiple(
    previous: int | None, new: int, expected: bool
) -> None:
    assert EveryNEvents(3).should_snapshot(previous, new) is expected


def test_the_policy_snapshots_after_saves_at_each_multiple(store: EventStore) -> None:
    saved_one_by_one(Repository(store), "a1", [1, 2, 3, 4, 5, 6, 7])  # versions 0..7, every 3 events
    assert snapshot_versions(store, "account-a1") == [2, 5]


def test_a_repository_policy_overrides_the_class_default(store: EventStore) -> None:
    saved_one_by_one(Repository(store, snapshot_policies={Account: NeverSnapshot()}), "a1", [1, 2, 3, 4])
    saved_one_by_one(Repository(store, snapshot_policies={Account: EveryNEvents(2)}), "a2", [1, 2, 3, 4])
    assert snapshot_versions(store, "account-a1") == []
    assert snapshot_versions(store, "account-a2") == [1, 3]


def test_load_starts_from_the_latest_snapshot_at_or_before_the_target(store: EventStore) -> None:
    repository = Repository(store)
    saved_one_by_one(repository, "a1", [1, 2, 3, 4, 5])  # snapshot at 2 and 5
    # A forged snapshot proves the loader trusts the cache instead of replaying those events.
    store.save_snapshot(forged("account-a1", 2, '{"owner":"forged","balance":1000,"movements":[]}'))
    assert repository.load(Account, "a1", version=3).state == AccountState("forged", 1003, [3])
    assert repository.load(Account, "a1", version=1).state.owner == "ann"  # before it: replayed
    assert repository.load(Account, "a1").state.balance == 15  # the real one at 5 wins


def test_a_snapshot_of_another_schema_version_is_ignored(store: EventStore) -> None:
    repository = Repository(store)
    saved_one_by_one(repository, "a1", [1, 2])
    store.save_snapshot(forged("account-a1", 2, '{"balance":999}', schema_version=7, aggregate_type="V7"))

    class V7(Account):  # the same aggregate after a change of its state's shape
        snapshot_schema_version = 7

    assert repository.load(V7, "a1").state.balance == 999
    assert repository.load(Account, "a1").state.balance == 3  # version 1 code never sees version 7


@pytest.mark.parametrize(
    "json_state",
    ['{"balance": "lots"}', "not json", '{"owner": "x"', "[]"],
)
def test_an_undecodable_snapshot_falls_back_to_replay_with_a_warning(
    store: EventStore, caplog: pytest.LogCaptureFixture, json_state: str
) -> None:
    repository = Repository(store, snapshot_policies={Account: NeverSnapshot()})
    saved_one_by_one(repository, "a1", [1, 2])
    store.save_snapshot(forged("account-a1", 2, json_state))
    with caplog.at_level(logging.WARNING, logger="chronik.snapshots"):
        assert repository.load(Account, "a1").state == AccountState("ann", 3, [1, 2])
    assert "does not decode" in caplog.text


def test_restoring_a_snapshot_runs_no_command_logic(store: EventStore) -> None:
    repository = Repository(store)
    saved_one_by_one(repository, "a1", [5, 5])
    store.save_snapshot(forged("account-a1", 2, '{"owner":"ann","balance":-50,"movements":[]}'))
    account = repository.load(Account, "a1")  # a state no command could reach, restored as is
    assert account.state.balance == -50
    with pytest.raises(InsufficientFunds):
        account.withdraw(1)


def test_deleting_every_snapshot_changes_no_result(store: EventStore) -> None:
    repository = Repository(store)
    for id, amounts in {"a1": list(range(1, 12)), "a2": [4, 4, 4], "a3": []}.items():
        saved_one_by_one(repository, id, amounts)
    assert snapshot_versions(store, "account-a1")
    ids = ["a1", "a2", "a3"]

    def everything() -> list[tuple[AccountState, int | None]]:
        views = []
        for id in ids:
            last = store.stream_version(f"account-{id}")
            assert last is not None
            for version in [None, *range(last + 1)]:
                account = repository.load(Account, id, version=version)
                views.append((account.state, account.version))
        return views

    with_snapshots = everything()
    assert store.delete_snapshots() > 0
    assert snapshot_versions(store, "account-a1") == []
    assert everything() == with_snapshots


example_ids = itertools.count()
commands = st.lists(st.one_of(st.integers(1, 50), st.integers(-60, -1)), min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=commands,
    batch=st.integers(1, 4),
    every=st.integers(1, 5),
    data=st.data(),
)
def test_with_and_without_snapshots_every_version_loads_the_same(
    store: EventStore, steps: list[int], batch: int, every: int, data: st.DataObject
) -> None:
    repository = Repository(store, snapshot_policies={Account: EveryNEvents(every)})
    plain = Repository(store, snapshot_policies={Account: NeverSnapshot()})
    id = f"h{next(example_ids)}"
    account = Account(id)
    account.open("ann")
    for index, step in enumerate(steps):
        with contextlib.suppress(InsufficientFunds):
            account.deposit(step) if step > 0 else account.withdraw(-step)
        if index % batch == 0:
            repository.save(account)
    repository.save(account)
    assert account.version is not None
    for version in [*data.draw(st.lists(st.integers(0, account.version), max_size=5)), account.version]:
        cached = repository.load(Account, id, version=version)
        replayed = plain.load(Account, id, version=version, use_snapshots=False)
        assert (cached.state, cached.version) == (replayed.state, replayed.version)
