"""The seed's failure cases, on a real SQLite file and a real PostgreSQL server: the status update that
fails because the database is busy (another connection holds the write lock) or because a statement
is wrong (a bad statement in the writer's transaction, a trigger that refuses the board's update).
Either way the write is rolled back whole (event, board row and group checkpoint), nothing
contradicts the log, and the work is done again, exactly once. How each fault is caused on each
backend is in `tests/examples/faults.py`; the tests themselves are the same for both."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chronik.examples.video import (
    BlobStore,
    VideoBoard,
    VideoWorker,
    make_sample_video,
    queries,
    upload_video,
)
from chronik.groups import group_status
from chronik.projections import reconcile
from chronik.store import EventStore, UnitOfWork
from tests.conftest import StoreFactory
from tests.examples.faults import DatabaseFaults, faults_for, short_lock_wait_query
from tests.examples.test_video import finished, run_until

pytestmark = pytest.mark.sql_stores

LOCK_TIMEOUT = {"sqlite": "database is locked", "postgres": "lock timeout"}
"""What each backend's error says when the store gave up waiting for the lock."""


@pytest.fixture
def sql_store(store_factory: StoreFactory, backend: str) -> EventStore:
    """A store that waits only briefly for a lock (then its write fails), with the board inline."""
    store = store_factory(query=short_lock_wait_query(backend))
    VideoBoard(store).attach_inline()
    return store


@pytest.fixture
def faults(sql_store: EventStore, backend: str) -> Iterator[DatabaseFaults]:
    made = faults_for(backend, sql_store)
    yield made
    made.close()


def snapshot(store: EventStore, video_id: str, worker: VideoWorker) -> dict[str, Any]:
    """What the log, the board and the group say about one video, read from committed data."""
    (row,) = [row for row in queries.board(store).videos if row.video_id == video_id]
    upload = store.read_stream(f"video-{video_id}")[0]
    (partition,) = group_status(store, worker.group, coordinator=worker.coordinator).partitions
    return {
        "log": [event.type for event in store.read_stream(f"video-{video_id}")],
        "aggregate": queries.video(store, video_id)["status"],
        "board": row.status,
        "job_done": partition.checkpoint >= upload.global_position,
    }


def test_a_busy_database_leaves_no_contradiction_and_the_work_is_redone(
    sql_store: EventStore, faults: DatabaseFaults, backend: str, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    video_id = upload_video(
        sql_store, blobs, make_sample_video(tmp_path / "a.mp4", seconds=1.0), uploader="ann"
    )
    locked: list[bool] = []
    errors: list[str] = []

    def busy_before_success(stage: str, attempt: int) -> None:
        if stage == "succeeded" and not locked:
            faults.hold_write_lock()  # another connection takes the write lock and keeps it
            locked.append(True)

    def log_errors(record: logging.LogRecord) -> bool:
        errors.append(record.getMessage())
        return True

    worker = VideoWorker(
        sql_store,
        blobs,
        worker_id="w1",
        group="g-busy",
        partitions=1,
        write_attempts=2,
        write_backoff=0.01,
        before_write=busy_before_success,
    )
    logger = logging.getLogger("chronik.examples.video")
    logger.addFilter(log_errors)
    try:
        worker.step()  # records the start, transcodes, then cannot record the success
    finally:
        logger.removeFilter(log_errors)
    assert (worker.stats.write_retries, worker.stats.abandoned, worker.stats.succeeded) == (2, 1, 0)
    # The worker says why: the backend's own lock-timeout error, not a hang and not a crash.
    failed_writes = [message for message in errors if ": succeeded write of" in message]
    assert len(failed_writes) == 2, errors
    assert all(LOCK_TIMEOUT[backend] in message for message in failed_writes), failed_writes
    during = snapshot(sql_store, video_id, worker)
    assert during == {
        "log": ["VideoUploaded", "VideoProcessingStarted"],
        "aggregate": "processing",
        "board": "processing",
        "job_done": False,
    }
    renditions = blobs.root / "renditions" / video_id
    assert list(renditions.iterdir()) == []  # the output of the abandoned write was deleted
    faults.release()  # the database is free again
    run_until(worker, finished(sql_store, video_id))
    after = snapshot(sql_store, video_id, worker)
    assert after == {
        "log": [
            "VideoUploaded",
            "VideoProcessingStarted",
            "VideoProcessingStarted",
            "VideoProcessingSucceeded",
        ],
        "aggregate": "succeeded",
        "board": "succeeded",
        "job_done": True,
    }
    assert reconcile(VideoBoard(sql_store)).ok
    output = Path(sql_store.read_stream(f"video-{video_id}")[-1].data["output_path"])
    assert list(renditions.iterdir()) == [output.parent] and output.is_file()  # the redone attempt's


def test_a_failed_statement_rolls_the_whole_write_back_and_it_is_retried(
    sql_store: EventStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    video_id = upload_video(
        sql_store, blobs, make_sample_video(tmp_path / "b.mp4", seconds=1.0), uploader="ann"
    )
    seen: list[dict[str, Any]] = []

    def bad_statement(uow: UnitOfWork, stage: str, attempt: int) -> None:
        if stage == "succeeded" and attempt == 1:
            # The seed's "query ran wrong" (a table that does not exist, the same SQL on either
            # backend), after the success event was appended in this transaction.
            uow.connection.execute("UPDATE video_status SET status = 'SUCCESS'")  # type: ignore[attr-defined]

    def look_before_retry(stage: str, attempt: int) -> None:
        if stage == "succeeded" and attempt == 2:
            seen.append(snapshot(sql_store, video_id, worker))

    worker = VideoWorker(
        sql_store,
        blobs,
        worker_id="w1",
        group="g-bad",
        partitions=1,
        write_backoff=0.01,
        before_write=look_before_retry,
        inside_write=bad_statement,
    )
    run_until(worker, finished(sql_store, video_id))
    assert seen == [
        {
            "log": ["VideoUploaded", "VideoProcessingStarted"],
            "aggregate": "processing",
            "board": "processing",
            "job_done": False,
        }
    ]
    assert snapshot(sql_store, video_id, worker) == {
        "log": ["VideoUploaded", "VideoProcessingStarted", "VideoProcessingSucceeded"],
        "aggregate": "succeeded",
        "board": "succeeded",
        "job_done": True,
    }
    assert (worker.stats.write_retries, worker.stats.abandoned) == (1, 0)
    assert reconcile(VideoBoard(sql_store)).ok


def test_a_trigger_refusing_the_board_update_rolls_back_the_event_too(
    sql_store: EventStore, faults: DatabaseFaults, tmp_path: Path
) -> None:
    """The fault is in the database, not in the worker: a real trigger on the board's table aborts
    the inline projection's update, after the success event was inserted in the same transaction.
    While the trigger stands, every attempt fails and the job is left for later; once it is gone,
    the next pass redoes the video and records its success once."""
    blobs = BlobStore(tmp_path / "blobs")
    video_id = upload_video(
        sql_store, blobs, make_sample_video(tmp_path / "t.mp4", seconds=1.0), uploader="ann"
    )
    board_table = VideoBoard(sql_store).table_set("v1")["videos"]
    faults.fail_updates_to(board_table, "succeeded")
    worker = VideoWorker(
        sql_store,
        blobs,
        worker_id="w1",
        group="g-trigger",
        partitions=1,
        write_attempts=3,
        write_backoff=0.01,
    )
    worker.step()
    assert (worker.stats.write_retries, worker.stats.abandoned, worker.stats.succeeded) == (3, 1, 0)
    assert snapshot(sql_store, video_id, worker) == {
        "log": ["VideoUploaded", "VideoProcessingStarted"],
        "aggregate": "processing",
        "board": "processing",
        "job_done": False,
    }
    assert reconcile(VideoBoard(sql_store)).ok  # the board agrees with the log even now
    faults.drop_trigger(board_table)
    run_until(worker, finished(sql_store, video_id))
    log = [event.type for event in sql_store.read_stream(f"video-{video_id}")]
    assert log == [
        "VideoUploaded",
        "VideoProcessingStarted",
        "VideoProcessingStarted",
        "VideoProcessingSucceeded",
    ]
    assert snapshot(sql_store, video_id, worker)["board"] == "succeeded"
    assert worker.stats.succeeded == 1
    assert reconcile(VideoBoard(sql_store)).ok


def test_the_worker_loop_outlives_a_database_it_cannot_reach(
    sql_store: EventStore, faults: DatabaseFaults, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    worker = VideoWorker(sql_store, blobs, worker_id="w1", group="g-loop", partitions=1, write_backoff=0.02)
    faults.hold_write_lock()  # not even a heartbeat can be written
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        time.sleep(0.8)  # several failed steps (each waits 0.2 s for the lock)
        assert runner.is_alive() and worker.leases == {}
        faults.release()
        video_id = upload_video(
            sql_store, blobs, make_sample_video(tmp_path / "c.mp4", seconds=1.0), uploader="ann"
        )
        deadline = time.monotonic() + 30
        while queries.video(sql_store, video_id)["status"] != "succeeded":
            assert runner.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.stop()
        runner.join(timeout=30)
    assert not runner.is_alive() and worker.stats.succeeded == 1
