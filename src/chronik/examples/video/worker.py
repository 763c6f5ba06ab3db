"""Video workers: members of a consumer group that transcode uploads, fenced by their lease epochs.

Why not `GroupMember` with a handler: a member calls its handler inside the unit of work that
commits the checkpoint, i.e. while holding the database's write lock (SQLite: `BEGIN IMMEDIATE`).
Transcoding takes seconds; holding the lock that long would stall every other writer, and a worker
paused mid-transcode would stall them all indefinitely. So this worker uses the group's coordinator
directly and splits each job into short fenced writes around the slow part:

1. **started**: one unit of work appends `VideoProcessingStarted(worker, epoch, attempt)` and
   re-asserts the lease (`coordinator.commit` with the partition's unchanged checkpoint: it fails
   with `PartitionLost` unless this worker still holds the partition under that epoch).
2. **work**, outside any transaction: transcode into a folder of its own (per attempt).
3. **outcome**: one unit of work appends `...Succeeded` / `...Failed` (+ `VideoParked` after the
   last attempt) and moves the checkpoint past the job, fenced the same way.

A worker that was paused past its lease (SIGSTOP, a long GC, a slow disk) and wakes up after
another worker took the partition over gets `PartitionLost` at step 3: its whole unit of work is
rolled back, so its late result never reaches the log (the "slow worker wrote after its
replacement" failure of a status column). It then deletes its output folder (unless the log names
it), as does a worker whose success write gave up; a failed attempt's folder is deleted before its
failure is written. Only a worker killed mid-job leaves its attempt folder behind (see docs/EXAMPLES.md).

A write that fails (the database is busy, a statement fails) is rolled back whole and retried with
the same event ids (an append whose outcome was unknown is then acknowledged, not doubled). If it
keeps failing, the job is abandoned without moving the checkpoint, so the next pass does the work
again: the log may show an attempt without an outcome, but never a state the log does not hold.

**Heartbeat during the work.** A transcode may take longer than the lease TTL. While it runs the
worker renews the lease of the job's partition every `lease_ttl / 3` seconds with the same fenced
commit as step 1 (checkpoint unchanged, lease extended; `PartitionLost` if it is no longer this
worker's), so a slow but alive worker keeps its video, and a dead or frozen one (SIGKILL,
SIGSTOP: no heartbeat) loses it when the lease runs out. If a heartbeat is refused, the worker
stops the transcode at once (`Fenced`): its work could no longer be recorded. The pause between
two attempts of a job (the backoff) heartbeats the same way, so a backoff longer than the TTL does
not cost a healthy worker its partition.

The heartbeat is a progress callback from the transcode loop (`transcode(progress=...)`), called
after every frame, not a background thread, because:

* it proves progress, not merely that the process exists: a transcode stuck inside FFmpeg (a hung
  read from a network disk, a decoder that loops) stops renewing and is replaced after one TTL,
  whereas a heartbeat thread would keep a hung worker's lease alive forever;
* every store call stays on the worker's one thread: units of work are per thread, and there is
  no heartbeat commit racing the outcome commit, no thread to stop or to outlive the job;
* it needs nothing from the store beyond what the worker already does (a fenced commit).

The price: one frame (or one `slow_seconds` tick) must take less than about `lease_ttl * 2 / 3`,
which holds by orders of magnitude for video frames. A heartbeat that fails because the database
is busy is logged and tried again at the next frame; if the lease runs out meanwhile, the fence
refuses the outcome as for any worker that lost its lease. Only the job's partition is renewed:
the worker's other partitions wait anyway while it works, so letting their leases lapse lets
another worker take them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from chronik.domain import aggregates
from chronik.errors import WrongExpectedVersion
from chronik.events.envelope import NO_STREAM, RecordedEvent
from chronik.examples.video.blobs import BlobStore
from chronik.examples.video.errors import VideoError
from chronik.examples.video.events import JOB_EVENTS
from chronik.examples.video.media import MediaError, Progress, transcode
from chronik.examples.video.model import Video
from chronik.groups import Advance, GroupConfig, Lease, PartitionLost, coordinator_for, partition_of
from chronik.store import EventStore, UnitOfWork, open_store
from chronik.subscriptions.waiting import wait_for_new_events

log = logging.getLogger("chronik.examples.video")

VIDEO_GROUP: Final = "video-workers"

BeforeWrite = Callable[[str, int], None]
"""`before_write(stage, attempt)`: a test's hook, called before each write's transaction opens."""
InsideWrite = Callable[[UnitOfWork, str, int], None]
"""`inside_write(uow, stage, attempt)`: a test's hook, called inside each write after the append."""


def video_group(name: str = VIDEO_GROUP, partitions: int = 4) -> GroupConfig:
    return GroupConfig(name=name, partitions=partitions, categories=("video",), event_types=JOB_EVENTS)


@dataclass
class WorkerStats:
    jobs: int = 0
    succeeded: int = 0
    failed_attempts: int = 0
    parked: int = 0
    skipped: int = 0
    fenced: int = 0  # results (or starts) refused because the lease or the video had moved on
    write_retries: int = 0
    abandoned: int = 0  # jobs left for the next pass after every write attempt failed
    heartbeats: int = 0  # lease renewals during the work of a job
    heartbeat_failures: int = 0  # renewals that failed for another reason than a lost lease


class Fenced(Exception):
    """This worker lost the video (its lease epoch is stale, or the video changed under it)."""


class WriteGaveUp(Exception):
    """Every attempt of one write failed; nothing of it was committed."""


class VideoWorker:
    def __init__(
        self,
        store: EventStore,
        blobs: BlobStore,
        *,
        worker_id: str | None = None,
        group: str = VIDEO_GROUP,
        partitions: int = 4,
        lease_ttl: float = 10.0,
        max_attempts: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        write_attempts: int = 5,
        write_backoff: float = 0.1,
        slow_seconds: float = 0.0,
        poll_interval: float = 0.1,
        batch_size: int = 100,
        before_write: BeforeWrite | None = None,
        inside_write: InsideWrite | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_ttl = lease_ttl
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.write_attempts = write_attempts
        self.write_backoff = write_backoff
        self.slow_seconds = slow_seconds
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.before_write = before_write
        self.inside_write = inside_write
        self.repository = aggregates.repository(store)
        self.coordinator = coordinator_for(store)
        self.config = self.coordinator.ensure_group(video_group(group, partitions))
        self.group = self.config.name
        self.stats = WorkerStats()
        self.leases: dict[int, Lease] = {}
        self._checkpoints: dict[int, int] = {}
        self._next_rebalance = 0.0
        self._next_heartbeat = 0.0
        self._stop = threading.Event()

    @property
    def heartbeat_interval(self) -> float:
        """How often a job's lease is renewed while it is worked on: three times per TTL."""
        return self.lease_ttl / 3

    # -- membership --------------------------------------------------------------------------

    def rebalance(self) -> None:
        held = self.coordinator.rebalance(self.group, self.worker_id, self.lease_ttl)
        for lease in held:
            old = self.leases.get(lease.partition)
            if old is None or old.epoch != lease.epoch:
                log.info("%s holds partition %d (epoch %d)", self.worker_id, lease.partition, lease.epoch)
        self.leases = {lease.partition: lease for lease in held}
        self._checkpoints = {lease.partition: lease.checkpoint for lease in held}
        self._next_rebalance = time.monotonic() + self.lease_ttl / 3

    def leave(self) -> None:
        self.coordinator.leave(self.group, self.worker_id)
        self.leases, self._checkpoints = {}, {}

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Work until `stop()`; nothing a job does ends the loop (errors are logged and retried)."""
        self._stop.clear()
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception:
                    log.exception("%s: step failed; retrying after a pause", self.worker_id)
                    self._next_rebalance = 0.0
                    self._stop.wait(self.write_backoff * 5)
        finally:
            try:
                self.leave()
            except Exception:
                log.warning("%s could not leave the group; its leases will expire", self.worker_id)

    def stop(self) -> None:
        self._stop.set()

    def step(self) -> int:
        """Rebalance if due, then work through one page of jobs; returns how many jobs were finished."""
        if time.monotonic() >= self._next_rebalance:
            self.rebalance()
        if not self.leases:
            self._stop.wait(self.poll_interval)
            return 0
        after = min(self._checkpoints.values())
        head = self.store.head_position()
        if head <= after:
            wait = max(0.0, min(1.0, self._next_rebalance - time.monotonic()))
            wait_for_new_events(self.store, after, wait, poll_interval=self.poll_interval)
            return 0
        page = self.store.read_all(
            after + 1,
            to_position=head,
            categories=list(self.config.categories),
            event_types=list(self.config.event_types),
            limit=self.batch_size,
        )
        scanned_to = page[-1].global_position if len(page) == self.batch_size else head
        finished = 0
        for event in page:
            number = partition_of(event.stream, self.config.partitions)
            if number not in self._checkpoints or event.global_position <= self._checkpoints[number]:
                continue
            try:
                self._job(event, number)
            except Fenced as lost:
                self.stats.fenced += 1
                log.warning("%s fenced on %s: %s", self.worker_id, event.stream, lost)
                self._next_rebalance = 0.0  # take the group's view at once
                return finished
            except WriteGaveUp as gave_up:
                self.stats.abandoned += 1
                log.warning("%s left %s for the next pass: %s", self.worker_id, event.stream, gave_up)
                return finished
            finished += 1
        self._advance_all(scanned_to)
        return finished

    def _advance_all(self, position: int) -> None:
        """Move every held partition to the end of the page (no jobs of theirs were left in it)."""
        targets = {
            number: Advance(self.leases[number].epoch, checkpoint, position)
            for number, checkpoint in self._checkpoints.items()
            if checkpoint < position
        }
        if not targets:
            return
        try:
            with self.store.transaction() as uow:
                self.coordinator.commit(uow, self.group, self.worker_id, targets, ttl=self.lease_ttl)
        except PartitionLost as lost:
            log.warning("%s: %s", self.worker_id, lost)
            self._next_rebalance = 0.0
            return
        except Exception as error:  # a busy database: the page is simply read again
            log.info("%s could not move its checkpoints (%s); will retry", self.worker_id, error)
            return
        self._checkpoints.update({number: advance.checkpoint for number, advance in targets.items()})

    # -- one job ---------------------------------------------------------------------------------

    def _job(self, event: RecordedEvent, number: int) -> None:
        epoch = self.leases[number].epoch
        video = self.repository.load(Video, event.stream.partition("-")[2])
        self.stats.jobs += 1
        metadata = {
            "actor": self.worker_id,
            "correlation_id": event.correlation_id or video.id,
            "causation_id": str(event.event_id),
        }
        if video.state.status not in ("uploaded", "retrying", "processing"):
            self.stats.skipped += 1  # already finished (a job event seen again): only move past it
            self._write(number, epoch, event.global_position, video, "skip", metadata)
            return
        while True:
            try:
                video.start(self.worker_id, epoch)
            except VideoError as refused:
                raise Fenced(str(refused)) from None
            self._write(number, epoch, self._checkpoints[number], video, "started", metadata)
            attempt = video.state.attempts
            log.info("%s processes %s (attempt %d, epoch %d)", self.worker_id, video.stream, attempt, epoch)
            keep_lease = self._lease_keeper(number, epoch)
            self._slow_down(keep_lease)
            folder = self.blobs.attempt_folder(video.id, self.worker_id, epoch, attempt)
            try:
                rendition = transcode(
                    Path(video.state.path), folder / "360p.mp4", folder / "thumbnail.png", progress=keep_lease
                )
            except Fenced:
                self.blobs.remove_attempt(folder)
                raise
            except MediaError as error:
                reason = error.reason
            except Exception as error:  # whatever a file does to the decoder, the worker lives on
                reason = "unexpected error: " + "".join(traceback.format_exception_only(error)).strip()
            else:
                video.succeed(self.worker_id, epoch, rendition)
                try:
                    self._write(number, epoch, event.global_position, video, "succeeded", metadata)
                except (Fenced, WriteGaveUp):
                    self._discard_unrecorded(video.stream, folder)
                    raise
                self.stats.succeeded += 1
                log.info("%s finished %s: %s", self.worker_id, video.stream, rendition.output_path)
                return
            self.blobs.remove_attempt(folder)
            video.fail(self.worker_id, epoch, reason, max_attempts=self.max_attempts)
            parked = video.state.status == "failed"
            checkpoint = event.global_position if parked else self._checkpoints[number]
            self._write(number, epoch, checkpoint, video, "failed", metadata)
            self.stats.failed_attempts += 1
            if parked:
                self.stats.parked += 1
                log.warning(
                    "%s parked %s after %d attempts: %s", self.worker_id, video.stream, attempt, reason
                )
                return
            pause = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            log.info(
                "%s: %s attempt %d failed (%s); retrying in %.2fs",
                self.worker_id,
                video.stream,
                attempt,
                reason,
                pause,
            )
            self._back_off(pause, keep_lease)

    def _discard_unrecorded(self, stream: str, folder: Path) -> None:
        """Delete a finished attempt's output whose success write was refused or given up, unless the
        log names it after all.

        Nobody else will ever look at that folder: a refused zombie's output is a duplicate of the
        replacement's, and an abandoned write's job is redone into a new attempt folder. But a write
        attempt whose commit went through unseen (the connection broke after the commit) may have
        recorded this very folder before a retry was refused, so the log decides; if it cannot be
        read, the folder is kept (garbage is better than a success pointing at nothing).
        """
        try:
            named = any(
                event.type == "VideoProcessingSucceeded" and Path(event.data["output_path"]).parent == folder
                for event in self.store.read_stream(stream)
            )
        except Exception as error:
            log.warning("%s keeps %s: could not read %s (%s)", self.worker_id, folder, stream, error)
            return
        if not named:
            self.blobs.remove_attempt(folder)

    def _back_off(self, pause: float, keep_lease: Progress) -> None:
        """Wait `pause` seconds before the next attempt, heartbeating the job's lease meanwhile.

        The video is still this worker's job while it waits: a plain sleep would let a lease shorter
        than the backoff run out, and another worker would take a healthy worker's partition over
        (and this one be fenced at its next write). Not cut short by `stop()`: the pause is short
        (`max_backoff`) and the retry it leads to is part of the job.
        """
        deadline = time.monotonic() + pause
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.heartbeat_interval / 2))
            keep_lease(0)

    def _slow_down(self, keep_lease: Progress) -> None:
        """`slow_seconds` of pretend work before the transcode (demos and tests), heartbeating like the
        transcode does; `stop()` cuts it short."""
        deadline = time.monotonic() + self.slow_seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._stop.wait(min(left, self.heartbeat_interval / 2))
            keep_lease(0)

    def _lease_keeper(self, number: int, epoch: int) -> Progress:
        """The transcode's progress callback: renew partition `number`'s lease when it is due.

        Raises `Fenced` (which stops the transcode) when the lease is no longer this worker's under
        `epoch`; any other failure is logged and the renewal is tried again at the next call.
        """

        def keep_lease(frames: int) -> None:
            now = time.monotonic()
            if now < self._next_heartbeat:
                return
            checkpoint = self._checkpoints[number]
            try:
                with self.store.transaction() as uow:
                    self.coordinator.commit(
                        uow,
                        self.group,
                        self.worker_id,
                        {number: Advance(epoch, checkpoint, checkpoint)},
                        ttl=self.lease_ttl,
                    )
            except PartitionLost as lost:
                raise Fenced(f"heartbeat refused after {frames} frames: {lost}") from None
            except Exception as error:  # a busy database: the lease may still be valid; try again soon
                self.stats.heartbeat_failures += 1
                log.warning("%s: heartbeat of partition %d failed (%s)", self.worker_id, number, error)
                self._next_heartbeat = now + min(self.heartbeat_interval, self.write_backoff)
                return
            self.stats.heartbeats += 1
            self._next_heartbeat = now + self.heartbeat_interval

        return keep_lease

    def _write(
        self, number: int, epoch: int, checkpoint: int, video: Video, stage: str, metadata: dict[str, str]
    ) -> None:
        """Append the video's pending events and set the partition's checkpoint, fenced, all or nothing."""
        codec = self.repository.codec
        events = [
            codec.to_new_event(p.event, metadata=metadata, event_id=p.event_id, occurred_at=p.occurred_at)
            for p in video.pending
        ]
        expected = NO_STREAM if video.version is None else video.version
        for attempt in range(1, self.write_attempts + 1):
            try:
                if self.before_write is not None:
                    self.before_write(stage, attempt)
                with self.store.transaction() as uow:
                    uow.lock_streams([video.stream])  # before the fence's write: see WriteOrderConflict
                    self.coordinator.commit(
                        uow,
                        self.group,
                        self.worker_id,
                        {number: Advance(epoch, self._checkpoints[number], checkpoint)},
                        ttl=self.lease_ttl,
                    )
                    result = uow.append(video.stream, events, expected) if events else None
                    if self.inside_write is not None:
                        self.inside_write(uow, stage, attempt)
            except PartitionLost as lost:
                raise Fenced(f"{stage} refused: {lost}") from None
            except WrongExpectedVersion as conflict:
                raise Fenced(f"{stage} refused: {video.stream} changed meanwhile ({conflict})") from None
            except Exception as error:  # nothing of this unit of work was committed: try it again
                self.stats.write_retries += 1
                log.warning(
                    "%s: %s write of %s failed (%s), attempt %d",
                    self.worker_id,
                    stage,
                    video.stream,
                    error,
                    attempt,
                )
                if attempt < self.write_attempts:
                    time.sleep(min(self.max_backoff, self.write_backoff * 2 ** (attempt - 1)))
                continue
            # Only now, after the commit, does this process believe the write happened.
            self._next_heartbeat = time.monotonic() + self.heartbeat_interval  # the commit renewed the lease
            if result is not None:
                video.mark_saved(result.stream_version)
            self._checkpoints[number] = checkpoint
            return
        raise WriteGaveUp(f"the {stage} write of {video.stream} failed {self.write_attempts} times")


def _pause_once(stage: str) -> BeforeWrite:
    """`--pause-before STAGE`: hold the worker at one exact point of its job, for a process test.

    A test that freezes a worker with SIGSTOP "after the transcode, before the success write" cannot
    hit that window by timing; so the worker says where it is (a JSON line on stdout) and waits for
    a line on stdin, and the test freezes it there, lets another worker take over, resumes it and
    releases it. Only the first time: the write's retries and later jobs run unhindered.
    """
    paused = False

    def pause(due: str, attempt: int) -> None:
        nonlocal paused
        if due != stage or paused:
            return
        paused = True
        print(json.dumps({"paused_before": stage}), flush=True)
        sys.stdin.readline()

    return pause


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m chronik.examples.video --store URL --blobs DIR [--id ID] ...`: one worker process.

    Stops on SIGTERM or SIGINT (leaving the group), then prints its statistics as one JSON line.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", required=True)
    parser.add_argument("--blobs", required=True)
    parser.add_argument("--id", default=None)
    parser.add_argument("--group", default=VIDEO_GROUP)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--ttl", type=float, default=10.0)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--backoff", type=float, default=0.2)
    parser.add_argument("--max-backoff", type=float, default=2.0)
    parser.add_argument(
        "--slow", type=float, default=0.0, help="pretend to work this long (heartbeating) before transcoding"
    )
    parser.add_argument("--board", action="store_true", help="keep the video board projection inline")
    parser.add_argument(
        "--pause-before",
        choices=("started", "succeeded", "failed"),
        default=None,
        help='tests: the first time this write is due, print {"paused_before": STAGE} and wait for a '
        "line on stdin",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    store = open_store(args.store)
    if args.board:
        from chronik.examples.video.projections import VideoBoard

        VideoBoard(store).attach_inline()
    worker = VideoWorker(
        store,
        BlobStore(args.blobs),
        worker_id=args.id,
        group=args.group,
        partitions=args.partitions,
        lease_ttl=args.ttl,
        max_attempts=args.max_attempts,
        backoff=args.backoff,
        max_backoff=args.max_backoff,
        slow_seconds=args.slow,
        before_write=_pause_once(args.pause_before) if args.pause_before else None,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    print(json.dumps({"worker": worker.worker_id, "ready": True}), flush=True)
    try:
        worker.run()
    finally:
        print(json.dumps({"worker": worker.worker_id, "stats": asdict(worker.stats)}), flush=True)
        store.close()
