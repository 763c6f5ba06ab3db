"""A member of a consumer group: claims partitions, handles their events in batches, fenced.

One thread does everything (rebalance, read, handle, commit), so a member that is paused or slow
stops heartbeating too: its leases run out, other members take its partitions, and its late
commit is refused by the fence instead of overwriting their work. Long handlers should keep
`lease_ttl` well above the time one batch takes.

How a page of the log is handled:

1. Read one page of the group's filtered log above the lowest checkpoint of the held partitions.
2. Fast path: one unit of work handles every event of the held partitions in global order, then
   moves every held partition's checkpoint to the end of the page, fenced (`coordinator.commit`).
   Batching is what makes the group fast on fsync-per-commit databases.
3. If a handler raises, that unit of work is rolled back and the page is redone event by event:
   each event in its own unit of work, retried with exponential backoff, parked after
   `max_attempts` with its error. Under `OnFailure.BLOCK_STREAM` the later events of a stream
   with a parked event are parked behind it, in order, without calling the handler.
4. A refused commit (`PartitionLost`) rolls the unit of work back; the member drops the partition,
   logs why, and rebalances at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from chronik.errors import StoreUnavailable
from chronik.events.envelope import RecordedEvent
from chronik.groups.coordinator import GroupCoordinator, coordinator_for
from chronik.groups.partitioning import partition_of
from chronik.groups.types import Advance, GroupConfig, Lease, NewParked, OnFailure, PartitionLost
from chronik.store import EventStore, UnitOfWork
from chronik.subscriptions.waiting import wait_for_new_events

log = logging.getLogger(__name__)

IDLE_CONFIRMATION: Final = 0.1  # seconds an idle member waits before `caught_up()` says so

GroupHandler = Callable[[RecordedEvent, UnitOfWork], None]
"""Called once per event in the unit of work that also commits the partition's checkpoint."""


class _HandlerFailed(Exception):
    def __init__(self, event: RecordedEvent, error: BaseException) -> None:
        self.event = event
        self.error = error


@dataclass
class MemberStats:
    handled: int = 0
    parked: int = 0
    batches: int = 0
    rebalances: int = 0
    rejected_commits: int = 0
    retries: int = 0


def default_member_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def describe_error(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(error), error)).strip()


class GroupMember:
    def __init__(
        self,
        store: EventStore,
        config: GroupConfig,
        handler: GroupHandler,
        *,
        member_id: str | None = None,
        lease_ttl: float = 10.0,
        batch_size: int = 1000,
        max_attempts: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        on_failure: OnFailure = OnFailure.BLOCK_STREAM,
        poll_interval: float = 0.05,
        coordinator: GroupCoordinator | None = None,
    ) -> None:
        if lease_ttl <= 0 or batch_size < 1 or max_attempts < 1:
            raise ValueError("lease_ttl must be positive, batch_size and max_attempts at least 1")
        self.store = store
        self.handler = handler
        self.member_id = member_id or default_member_id()
        self.lease_ttl = lease_ttl
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_failure = on_failure
        self.poll_interval = poll_interval
        self.coordinator = coordinator or coordinator_for(store)
        self.config = self.coordinator.ensure_group(config)
        self.group = self.config.name
        self.stats = MemberStats()
        self.leases: dict[int, Lease] = {}  # what this member believes it holds
        self._checkpoints: dict[int, int] = {}
        self._next_rebalance = 0.0
        self._stop = threading.Event()

    # -- membership --------------------------------------------------------------------------

    @property
    def heartbeat_interval(self) -> float:
        return self.lease_ttl / 3

    def rebalance(self) -> None:
        """Heartbeat and take the group's view of what this member holds (the database is the truth)."""
        held = {
            lease.partition: lease
            for lease in self.coordinator.rebalance(self.group, self.member_id, self.lease_ttl)
        }
        for number in sorted(set(self.leases) - set(held)):
            log.info("member %s of group %r no longer holds partition %d", self.member_id, self.group, number)
        for number, lease in held.items():
            old = self.leases.get(number)
            if old is None or old.epoch != lease.epoch:
                log.info(
                    "member %s of group %r holds partition %d (epoch %d, from position %d)",
                    self.member_id,
                    self.group,
                    number,
                    lease.epoch,
                    lease.checkpoint,
                )
        self.leases = held
        self._checkpoints = {number: lease.checkpoint for number, lease in held.items()}
        self.stats.rebalances += 1
        self._next_rebalance = time.monotonic() + self.heartbeat_interval

    def leave(self) -> None:
        """Give every partition back at once, so the others need not wait for the leases to expire."""
        self.coordinator.leave(self.group, self.member_id)
        self.leases, self._checkpoints = {}, {}

    def _drop(self, lost: PartitionLost) -> None:
        self.stats.rejected_commits += 1
        log.warning("member %s stops partition %d: %s", self.member_id, lost.partition, lost)
        self.leases.pop(lost.partition, None)
        self._checkpoints.pop(lost.partition, None)
        self._next_rebalance = 0.0  # find out at once what this member still holds

    # -- running -----------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> None:
        """Work until `stop()` (or, with `until_idle`, until everything held is handled); then leave.

        A store that is briefly unavailable (a busy SQLite lock, a dropped connection) does not end
        the member: it waits and goes on, and if it was away too long the fence tells it so.
        """
        self._stop.clear()
        try:
            while not self._stop.is_set():
                try:
                    handled = self.step()
                except StoreUnavailable as error:
                    if not error.retryable:
                        raise
                    log.warning("member %s: store unavailable, retrying: %s", self.member_id, error)
                    self._stop.wait(min(1.0, self.heartbeat_interval))
                    continue
                if handled == 0 and until_idle and self.caught_up():
                    return
        finally:
            with contextlib.suppress(StoreUnavailable):
                self.leave()  # if this fails, the leases simply expire

    def stop(self) -> None:
        """Ask `run` to return after the current page; safe from another thread or a signal handler."""
        self._stop.set()

    def caught_up(self) -> bool:
        """True when every held partition's checkpoint has reached the readable head.

        A store's head may trail its latest commits for a moment (PostgreSQL refreshes its read
        barrier at most every 50 ms), so an idle-looking member confirms it by waiting up to
        `IDLE_CONFIRMATION` seconds for the head to pass its lowest checkpoint.
        """
        if not self.leases:
            return False
        lowest = min(self._checkpoints.values())
        if self.store.head_position() > lowest:
            return False
        moved = wait_for_new_events(self.store, lowest, IDLE_CONFIRMATION, poll_interval=self.poll_interval)
        return not moved

    def step(self) -> int:
        """Handle one page of what this member believes it holds, then heartbeat if due.

        Returns how many events were handled or parked. Safety never depends on the heartbeat:
        a member that was paused carries on with its old view, exactly like a slow one, and the
        fence refuses its commit; the heartbeat only tells it sooner what it still holds.
        """
        if not self.leases and time.monotonic() < self._next_rebalance:
            self._stop.wait(max(0.0, min(self.poll_interval * 4, self._next_rebalance - time.monotonic())))
            return 0
        handled = self._handle_next_page() if self.leases else 0
        if time.monotonic() >= self._next_rebalance:
            self.rebalance()
        return handled

    def _handle_next_page(self) -> int:
        after = min(self._checkpoints.values())
        head = self.store.head_position()
        if head <= after:
            wait = max(0.0, min(1.0, self._next_rebalance - time.monotonic()))
            if not wait_for_new_events(self.store, after, wait, poll_interval=self.poll_interval):
                return 0
            head = self.store.head_position()
        page = self.store.read_all(
            after + 1,
            to_position=head,
            categories=self.config.categories or None,
            event_types=self.config.event_types or None,
            limit=self.batch_size,
        )
        # A short page scanned everything up to `head`; a full one only up to its last event.
        scanned_to = page[-1].global_position if len(page) == self.batch_size else head
        partitions = self.config.partitions
        events = [
            event
            for event in page
            if (number := partition_of(event.stream, partitions)) in self._checkpoints
            and event.global_position > self._checkpoints[number]
        ]
        try:
            self._handle_page(events, scanned_to)
        except PartitionLost as lost:
            self._drop(lost)
            return 0
        except _HandlerFailed as failed:
            log.info("handler failed in a batch (%s); redoing the page one event at a time", failed.error)
            try:
                self._handle_one_by_one(events, scanned_to)
            except PartitionLost as lost:
                self._drop(lost)
                return 0
        self.stats.batches += 1
        return len(events)

    def _targets(self, scanned_to: int) -> dict[int, Advance]:
        return {
            number: Advance(self.leases[number].epoch, checkpoint, scanned_to)
            for number, checkpoint in self._checkpoints.items()
            if checkpoint < scanned_to
        }

    def _handle_page(self, events: Sequence[RecordedEvent], scanned_to: int) -> None:
        targets = self._targets(scanned_to)
        parked: list[NewParked] = []
        with self.store.transaction() as uow:
            blocked = self._blocked(uow)
            for event in events:
                behind = blocked.get(event.stream)
                if behind is not None:
                    parked.append(self._parked(event, behind, "waits behind a parked event of its stream", 0))
                    continue
                try:
                    self.handler(event, uow)
                except Exception as error:
                    raise _HandlerFailed(event, error) from error
            self.coordinator.commit(uow, self.group, self.member_id, targets, parked, self.lease_ttl)
        self._checkpoints.update({number: advance.checkpoint for number, advance in targets.items()})
        self.stats.handled += len(events) - len(parked)
        self.stats.parked += len(parked)

    def _blocked(self, uow: UnitOfWork) -> dict[str, int]:
        if self.on_failure is not OnFailure.BLOCK_STREAM:
            return {}
        return self.coordinator.blocked_streams(uow, self.group, sorted(self._checkpoints))

    def _parked(self, event: RecordedEvent, blocked_by: int | None, error: str, attempts: int) -> NewParked:
        return NewParked(
            partition=partition_of(event.stream, self.config.partitions),
            stream=event.stream,
            global_position=event.global_position,
            event_id=str(event.event_id),
            blocked_by=blocked_by,
            error=error,
            attempts=attempts,
        )

    def _handle_one_by_one(self, events: Sequence[RecordedEvent], scanned_to: int) -> None:
        for event in events:
            number = partition_of(event.stream, self.config.partitions)
            if number not in self.leases:
                continue  # lost meanwhile
            self._handle_with_retries(event, number)
        # Move every partition to the end of the page, including those without events in it.
        with self.store.transaction() as uow:
            targets = self._targets(scanned_to)
            self.coordinator.commit(uow, self.group, self.member_id, targets, (), self.lease_ttl)
        self._checkpoints.update({number: advance.checkpoint for number, advance in targets.items()})

    def _handle_with_retries(self, event: RecordedEvent, number: int) -> None:
        target = {
            number: Advance(self.leases[number].epoch, self._checkpoints[number], event.global_position)
        }
        last_error: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                with self.store.transaction() as uow:
                    behind = self._blocked(uow).get(event.stream)
                    if behind is not None:
                        note = "waits behind a parked event of its stream"
                        parked = [self._parked(event, behind, note, 0)]
                        self.coordinator.commit(
                            uow, self.group, self.member_id, target, parked, self.lease_ttl
                        )
                        self.stats.parked += 1
                        self._checkpoints[number] = event.global_position
                        return
                    try:
                        self.handler(event, uow)
                    except Exception as error:
                        raise _HandlerFailed(event, error) from error
                    self.coordinator.commit(uow, self.group, self.member_id, target, (), self.lease_ttl)
                self.stats.handled += 1
                self._checkpoints[number] = event.global_position
                return
            except _HandlerFailed as failed:
                last_error = failed.error
                if attempt < self.max_attempts:
                    self.stats.retries += 1
                    time.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
        assert last_error is not None
        log.warning(
            "member %s parks event %s (stream %r, position %d) after %d attempts: %s",
            self.member_id,
            event.event_id,
            event.stream,
            event.global_position,
            self.max_attempts,
            describe_error(last_error),
        )
        with self.store.transaction() as uow:
            parked = [self._parked(event, None, describe_error(last_error), self.max_attempts)]
            self.coordinator.commit(uow, self.group, self.member_id, target, parked, self.lease_ttl)
        self.stats.parked += 1
        self._checkpoints[number] = event.global_position
