"""The seed's failure cases, on a real SQLite file: the status update that fails because the database
is busy (another connection holds the write lock) or because a statement is wrong. Either way the
write is rolled back whole (event, board row and group checkpoint), nothing contradicts the log,
and the work is done again."""

from __future__ import annotations

import sqlite3
import threading
import time
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
from chronik.store import EventStore, UnitOfWork, open_store
from tests.examples.test_video import finished, run_until


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    store = open_store(f"sqlite:///{tmp_path / 'video.db'}?busy_timeout=0.2")
    VideoBoard(store).attach_inline()
    yield store
    store.close()


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
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    video_id = upload_video(
        sqlite_store, blobs, make_sample_video(tmp_path / "a.mp4", seconds=1.0), uploader="ann"
    )
    locker = sqlite3.connect(sqlite_store.path, isolation_level=None)  # type: ignore[attr-defined]

    locked: list[bool] = []

    def busy_before_success(stage: str, attempt: int) -> None:
        if stage == "succeeded" and not locked:
            locker.execute("BEGIN IMMEDIATE")  # another connection takes the write lock and keeps it
            locked.append(True)

    worker = VideoWorker(
        sqlite_store,
        blobs,
        worker_id="w1",
        group="g-busy",
        partitions=1,
        write_attempts=2,
        write_backoff=0.01,
        before_write=busy_before_success,
    )
    worker.step()  # records the start, transcodes, then cannot record the success
    assert (worker.stats.write_retries, worker.stats.abandoned, worker.stats.succeeded) == (2, 1, 0)
    during = snapshot(sqlite_store, video_id, worker)
    assert during == {
        "log": ["VideoUploaded", "VideoProcessingStarted"],
        "aggregate": "processing",
        "board": "processing",
        "job_done": False,
    }
    locker.execute("ROLLBACK")  # the database is free again
    locker.close()
    run_until(worker, finished(sqlite_store, video_id))
    after = snapshot(sqlite_store, video_id, worker)
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
    assert reconcile(VideoBoard(sqlite_store)).ok


def test_a_failed_statement_rolls_the_whole_write_back_and_it_is_retried(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    video_id = upload_video(
        sqlite_store, blobs, make_sample_video(tmp_path / "b.mp4", seconds=1.0), uploader="ann"
    )
    seen: list[dict[str, Any]] = []

    def bad_statement(uow: UnitOfWork, stage: str, attempt: int) -> None:
        if stage == "succeeded" and attempt == 1:
            # The seed's "query ran wrong", after the success event was appended in this transaction.
            uow.connection.execute("UPDATE video_status SET status = 'SUCCESS' WHERE id = ?", (video_id,))  # type: ignore[attr-defined]

    def look_before_retry(stage: str, attempt: int) -> None:
        if stage == "succeeded" and attempt == 2:
            seen.append(snapshot(sqlite_store, video_id, worker))

    worker = VideoWorker(
        sqlite_store,
        blobs,
        worker_id="w1",
        group="g-bad",
        partitions=1,
        write_backoff=0.01,
        before_write=look_before_retry,
        inside_write=bad_statement,
    )
    run_until(worker, finished(sqlite_store, video_id))
    assert seen == [
        {
            "log": ["VideoUploaded", "VideoProcessingStarted"],
            "aggregate": "processing",
            "board": "processing",
            "job_done": False,
        }
    ]
    assert snapshot(sqlite_store, video_id, worker) == {
        "log": ["VideoUploaded", "VideoProcessingStarted", "VideoProcessingSucceeded"],
        "aggregate": "succeeded",
        "board": "succeeded",
        "job_done": True,
    }
    assert (worker.stats.write_retries, worker.stats.abandoned) == (1, 0)
    assert reconcile(VideoBoard(sqlite_store)).ok


def test_the_worker_loop_outlives_a_database_it_cannot_reach(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    worker = VideoWorker(
        sqlite_store, blobs, worker_id="w1", group="g-loop", partitions=1, write_backoff=0.02
    )
    locker = sqlite3.connect(sqlite_store.path, isolation_level=None)  # type: ignore[attr-defined]
    locker.execute("BEGIN IMMEDIATE")  # not even a heartbeat can be written
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        time.sleep(0.8)  # several failed steps (each waits busy_timeout = 0.2 s for the lock)
        assert runner.is_alive() and worker.leases == {}
        locker.execute("ROLLBACK")
        video_id = upload_video(
            sqlite_store, blobs, make_sample_video(tmp_path / "c.mp4", seconds=1.0), uploader="ann"
        )
        deadline = time.monotonic() + 30
        while queries.video(sqlite_store, video_id)["status"] != "succeeded":
            assert runner.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        worker.stop()
        runner.join(timeout=30)
        locker.close()
    assert not runner.is_alive() and worker.stats.succeeded == 1
