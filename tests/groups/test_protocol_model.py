"""Model check of the lease/epoch/checkpoint protocol against the real coordinators.

A hypothesis state machine drives members through joins, rebalances, batches, leaves, crashes
and clock jumps on a `ManualClock`. A member that is not scheduled while the clock moves is a
paused member; one that acts on its old view afterwards is a zombie. After every step it checks:

* at most one member can commit for a partition (each member's view is probed with a fenced
  commit that is then rolled back);
* a partition's epoch never goes backwards;
* every event at or below its partition's checkpoint has its effect committed exactly once, and
  no event above it has any (no double, no skip).

And, on demand, liveness: once every live member has rebalanced a few times with the clock
still, every partition is owned by a live member and quotas differ by at most one.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chronik import AppendRequest, ManualClock, NewEvent
from chronik.groups import Advance, GroupConfig, PartitionLost, coordinator_for, partition_of
from chronik.store import EventStore, open_store
from tests.conftest import service_url
from tests.postgres_support import drop_schemas, new_schema_name, store_url

TTL = 10.0
PARTITIONS = 4
MEMBERS = ("m0", "m1", "m2")
STREAMS = tuple(f"in-{i}" for i in range(6))


class _Probe(Exception):
    """Raised to roll a probing unit of work back."""


class ProtocolMachine(RuleBasedStateMachine):
    url = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = ManualClock()
        url = self.url.replace("{tmp}", str(Path(self.tmp.name)))
        self.store: EventStore = open_store(url, clock=self.clock)
        self.coordinator = coordinator_for(self.store)
        self.coordinator.ensure_group(GroupConfig(name="g", partitions=PARTITIONS, categories=("in",)))
        self.views: dict[str, dict[int, tuple[int, int]]] = {}  # member -> partition -> (epoch, checkpoint)
        # Grants a member saw before: a batch it started then may commit late (a stale in-flight batch).
        self.past: dict[str, list[tuple[int, int, int]]] = {}
        self.epochs = [0] * PARTITIONS
        self.committed = [0] * PARTITIONS  # the model's checkpoint per partition
        self._append(3)

    def teardown(self) -> None:
        self.store.close()
        self.tmp.cleanup()

    def _append(self, rounds: int) -> None:
        for _ in range(rounds):
            self.store.append_many(AppendRequest(s, [NewEvent(type="Happened", data={})]) for s in STREAMS)

    # -- what members do ---------------------------------------------------------------------

    @rule(member=st.sampled_from(MEMBERS))
    def rebalance(self, member: str) -> None:
        leases = self.coordinator.rebalance("g", member, TTL)
        self.views[member] = {lease.partition: (lease.epoch, lease.checkpoint) for lease in leases}
        self.past.setdefault(member, []).extend(
            (lease.partition, lease.epoch, lease.checkpoint) for lease in leases
        )

    @rule(member=st.sampled_from(MEMBERS), data=st.data(), size=st.integers(1, 5), stale=st.booleans())
    def handle_batch(self, member: str, data: st.DataObject, size: int, stale: bool) -> None:
        view = self.views.get(member)
        if stale and self.past.get(member):
            # A batch begun under an earlier view of this member (or of an earlier process under
            # its id), committing only now.
            partition, epoch, checkpoint = data.draw(st.sampled_from(self.past[member]))
            view = {}
        elif view:
            partition = data.draw(st.sampled_from(sorted(view)))
            epoch, checkpoint = view[partition]
        else:
            return
        head = self.store.head_position()
        events = [
            e
            for e in self.store.read_all(checkpoint + 1, to_position=head, categories=["in"])
            if partition_of(e.stream, PARTITIONS) == partition
        ][:size]
        if not events:
            return
        new_checkpoint = events[-1].global_position
        try:
            with self.store.transaction() as uow:
                uow.append(
                    f"effect-{partition}",
                    [NewEvent(type="Effect", data={"position": e.global_position}) for e in events],
                )
                self.coordinator.commit(
                    uow, "g", member, {partition: Advance(epoch, checkpoint, new_checkpoint)}, ttl=TTL
                )
        except PartitionLost:
            view.pop(partition, None)  # a fenced member stops the partition
            return
        # Accepted: it must have started exactly where the last accepted commit ended.
        assert checkpoint == self.committed[partition], (member, partition, checkpoint, self.committed)
        self.committed[partition] = new_checkpoint
        if partition in self.views.get(member, {}):
            self.views[member][partition] = (epoch, new_checkpoint)

    @rule(member=st.sampled_from(MEMBERS))
    def leave(self, member: str) -> None:
        self.coordinator.leave("g", member)
        self.views.pop(member, None)

    @rule(member=st.sampled_from(MEMBERS))
    def crash(self, member: str) -> None:
        self.views.pop(member, None)  # its rows stay until they expire

    @rule(seconds=st.sampled_from([0.5, 3.0, TTL / 2, TTL + 0.5, 3 * TTL]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def append_events(self) -> None:
        self._append(1)

    @precondition(lambda self: bool(self.views))
    @rule()
    def settle(self) -> None:
        """Liveness: with the clock still, live members converge to a full, fair assignment."""
        alive = sorted(self.views)
        self.clock.advance(TTL + 1)  # whoever is not in `alive` is now dead for good
        for _ in range(3):
            for member in alive:
                self.rebalance(member)
        rows = self.coordinator.partition_rows("g")
        owners = Counter(row.owner for row in rows)
        assert set(owners) <= set(alive), owners
        counts = [owners.get(member, 0) for member in alive]
        assert sum(counts) == PARTITIONS and max(counts) - min(counts) <= 1, counts

    # -- what must always hold -----------------------------------------------------------------

    @invariant()
    def at_most_one_member_can_commit(self) -> None:
        rows = self.coordinator.partition_rows("g")
        for row in rows:
            able = []
            for member, view in self.views.items():
                if row.partition not in view:
                    continue
                try:
                    with self.store.transaction() as uow:
                        epoch = view[row.partition][0]
                        self.coordinator.commit(
                            uow, "g", member, {row.partition: Advance(epoch, row.checkpoint, row.checkpoint)}
                        )
                        raise _Probe
                except PartitionLost:
                    continue
                except _Probe:
                    able.append(member)
            assert len(able) <= 1, (row.partition, able)

    @invariant()
    def epochs_never_go_backwards(self) -> None:
        for row in self.coordinator.partition_rows("g"):
            assert row.epoch >= self.epochs[row.partition]
            self.epochs[row.partition] = row.epoch
            assert row.checkpoint == self.committed[row.partition]

    @invariant()
    def every_effect_exactly_once_and_none_skipped(self) -> None:
        effects = Counter(e.data["position"] for e in self.store.read_all(categories=["effect"]))
        assert all(count == 1 for count in effects.values()), effects
        expected = {
            e.global_position
            for e in self.store.read_all(categories=["in"])
            if e.global_position <= self.committed[partition_of(e.stream, PARTITIONS)]
        }
        assert set(effects) == expected


class SQLiteProtocolMachine(ProtocolMachine):
    # synchronous=normal: durability is not under test here, the protocol is.
    url = "sqlite:///{tmp}/model.db?synchronous=normal"


class PostgresProtocolMachine(ProtocolMachine):
    """Each example in a fresh schema, dropped afterwards."""

    def __init__(self) -> None:
        base = os.environ["CHRONIK_TEST_POSTGRES_URL"]
        self.schema = new_schema_name()
        self.url = store_url(base, self.schema)
        super().__init__()

    def teardown(self) -> None:
        super().teardown()
        drop_schemas(os.environ["CHRONIK_TEST_POSTGRES_URL"], [self.schema])


_settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestProtocolOnMemory = ProtocolMachine.TestCase
TestProtocolOnMemory.settings = _settings
TestProtocolOnSQLite = SQLiteProtocolMachine.TestCase
TestProtocolOnSQLite.settings = _settings

if os.environ.get("CHRONIK_TEST_POSTGRES_URL"):
    # Fewer examples: each one opens a schema on the server (a few hundred ms on a shared machine).
    TestProtocolOnPostgres = pytest.mark.postgres(PostgresProtocolMachine.TestCase)
    TestProtocolOnPostgres.settings = settings(_settings, max_examples=60)
else:

    @pytest.mark.postgres
    def test_protocol_on_postgres() -> None:
        service_url("CHRONIK_TEST_POSTGRES_URL", "PostgreSQL")  # skips, or fails under CI
