"""The video pipeline in one process, on every backend: real files stored by hash, real transcodes with
PyAV, the video's rules, failures retried then parked, a retry by hand, and the board's figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chronik.errors import AggregateNotFound, InvalidInput
from chronik.examples.video import (
    BlobStore,
    RetryNotAllowed,
    StaleWorker,
    Video,
    VideoBoard,
    VideoWorker,
    make_sample_video,
    probe,
    queries,
    retry_video,
    upload_video,
)
from chronik.examples.video.media import Rendition
from chronik.projections import reconcile
from chronik.store import EventStore
from tests.conftest import StoreFactory


def run_until(worker: VideoWorker, done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"worker did not finish in {timeout}s: {worker.stats}"
        worker.step()


def statuses(store: EventStore, *video_ids: str) -> list[str]:
    return [queries.video(store, video_id)["status"] for video_id in video_ids]


def finished(store: EventStore, *video_ids: str) -> Callable[[], bool]:
    return lambda: all(status in ("succeeded", "failed") for status in statuses(store, *video_ids))


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def samples(tmp_path: Path) -> list[Path]:
    return [make_sample_video(tmp_path / f"clip{seed}.mp4", seconds=1.0, seed=seed) for seed in range(2)]


def test_the_video_refuses_results_from_a_replaced_worker() -> None:
    video = Video("v1")
    video.upload("a.mp4", "/blobs/x", 10, "x" * 64, "ann")
    video.start("w1", epoch=1)
    video.start("w2", epoch=2)  # w1's lease ran out; w2 took the partition over
    rendition = Rendition("/o.mp4", "/t.png", 1.0, 10, 320, 240, 480, 360, 100, 10)
    with pytest.raises(StaleWorker) as stale:
        video.succeed("w1", 1, rendition)
    assert (stale.value.current, stale.value.current_epoch) == ("w2", 2)
    video.succeed("w2", 2, rendition)
    assert (video.state.status, video.state.attempts) == ("succeeded", 2)
    with pytest.raises(RetryNotAllowed):
        video.request_retry("ops")
    failing = Video("v2")
    failing.upload("b.mp4", "/blobs/y", 10, "y" * 64, "ann")
    for attempt in (1, 2):
        failing.start("w1", epoch=1)
        failing.fail("w1", 1, "broken", max_attempts=2)
        assert failing.state.status == ("retrying" if attempt == 1 else "failed")
    failing.request_retry("ops", "disk remounted")
    assert (failing.state.status, failing.state.attempts) == ("uploaded", 0)


def test_uploads_are_stored_by_content_hash(store: EventStore, blobs: BlobStore, samples: list[Path]) -> None:
    first = upload_video(store, blobs, samples[0], uploader="ann", video_id="one")
    again = upload_video(store, blobs, samples[0], uploader="bob", video_id="two")  # the same bytes
    (uploaded_one,) = store.read_stream("video-one")
    (uploaded_two,) = store.read_stream("video-two")
    assert (first, again) == ("one", "two")
    data = uploaded_one.data
    assert data["path"] == uploaded_two.data["path"] and Path(data["path"]).name == data["sha256"]
    assert data["size_bytes"] == samples[0].stat().st_size == Path(data["path"]).stat().st_size
    assert (data["uploader"], uploaded_two.data["uploader"], data["filename"]) == ("ann", "bob", "clip0.mp4")
    assert len(list((blobs.root / "uploads").rglob("*"))) == 2  # one fan-out folder, one blob


def test_a_worker_transcodes_uploads_to_360p_h264_and_a_thumbnail(
    store: EventStore, blobs: BlobStore, samples: list[Path]
) -> None:
    ids = [upload_video(store, blobs, path, uploader="ann") for path in samples]
    worker = VideoWorker(store, blobs, worker_id="w1", partitions=2)
    run_until(worker, finished(store, *ids))
    assert statuses(store, *ids) == ["succeeded", "succeeded"]
    for video_id in ids:
        state = queries.video(store, video_id)
        codec, width, height, duration = probe(Path(state["output_path"]))
        assert (codec, width, height) == ("h264", 480, 360) and 0.8 <= duration <= 1.2
        assert Path(state["thumbnail_path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        steps = queries.timeline(store, video_id)
        assert [step.type for step in steps] == [
            "VideoUploaded",
            "VideoProcessingStarted",
            "VideoProcessingSucceeded",
        ]
        assert steps[1].detail["worker"] == "w1" and steps[1].detail["epoch"] >= 1
        assert steps[2].since_upload_seconds >= 0
    assert worker.stats.succeeded == 2 and worker.stats.fenced == 0
    with pytest.raises(AggregateNotFound):
        queries.timeline(store, "nope")


def test_a_corrupt_upload_fails_cleanly_is_parked_and_the_worker_goes_on(
    store: EventStore, blobs: BlobStore, samples: list[Path], tmp_path: Path
) -> None:
    junk = tmp_path / "notes.mp4"
    junk.write_text("this is a text file, not a video\n" * 50)
    bad = upload_video(store, blobs, junk, uploader="eve", video_id="bad")
    good = upload_video(store, blobs, samples[1], uploader="ann", video_id="good")
    worker = VideoWorker(store, blobs, worker_id="w1", partitions=1, max_attempts=3, backoff=0.01)
    run_until(worker, finished(store, bad, good))
    assert statuses(store, bad, good) == ["failed", "succeeded"]
    types = [step.type for step in queries.timeline(store, bad)]
    assert types == ["VideoUploaded"] + ["VideoProcessingStarted", "VideoProcessingFailed"] * 3 + [
        "VideoParked"
    ]
    parked = store.read_stream("video-bad")[-1].data
    assert parked["attempts"] == 3 and "not a readable video" in parked["reason"]
    assert (worker.stats.failed_attempts, worker.stats.parked, worker.stats.succeeded) == (3, 1, 1)
    assert not list((blobs.root / "renditions" / "bad").glob("*/*"))  # no half-written output kept


def test_a_parked_video_can_be_retried_by_hand(
    store: EventStore, blobs: BlobStore, samples: list[Path]
) -> None:
    video_id = upload_video(store, blobs, samples[0], uploader="ann")
    blob = Path(queries.video(store, video_id)["path"])
    hidden = blob.with_name("hidden")
    blob.rename(hidden)  # the blob volume is not mounted: every attempt fails
    worker = VideoWorker(store, blobs, worker_id="w1", partitions=1, max_attempts=2, backoff=0.01)
    run_until(worker, finished(store, video_id))
    assert statuses(store, video_id) == ["failed"]
    hidden.rename(blob)  # mounted again
    retry_video(store, video_id, requested_by="ops", note="volume remounted")
    assert statuses(store, video_id) == ["uploaded"]
    run_until(worker, finished(store, video_id))
    assert statuses(store, video_id) == ["succeeded"]
    types = [step.type for step in queries.timeline(store, video_id)]
    assert types[-4:] == [
        "VideoParked",
        "VideoRetryRequested",
        "VideoProcessingStarted",
        "VideoProcessingSucceeded",
    ]


@pytest.mark.sql_stores
def test_the_board_counts_videos_by_status_with_step_times(
    store_factory: StoreFactory, backend: str, blobs: BlobStore, samples: list[Path], tmp_path: Path
) -> None:
    store = store_factory()
    board_projection = VideoBoard(store)
    board_projection.attach_inline()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01" * 500)
    ids = [upload_video(store, blobs, path, uploader="ann") for path in samples]
    bad = upload_video(store, blobs, junk, uploader="eve")
    assert queries.board(store).counts == {"uploaded": 3}
    worker = VideoWorker(store, blobs, worker_id="w1", partitions=2, max_attempts=1)
    run_until(worker, finished(store, *ids, bad))
    board = queries.board(store)
    assert board.counts == {"succeeded": 2, "failed": 1}
    rows = {row.video_id: row for row in board.videos}
    for video_id in ids:
        row = rows[video_id]
        assert row.status == "succeeded" and row.worker == "w1" and row.attempts == 1
        assert row.wait_seconds is not None and row.processing_seconds is not None
        assert row.total_seconds is not None and row.total_seconds >= row.processing_seconds > 0
    assert rows[bad].status == "failed" and "not a readable video" in (rows[bad].last_error or "")
    assert board.position == store.head_position()
    assert reconcile(board_projection).ok


def test_a_failed_upload_leaves_no_half_written_file(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    uploads = blobs.root / "uploads"
    with pytest.raises(InvalidInput, match=r"cannot upload .*nope\.mp4: no such file"):
        blobs.put_file(tmp_path / "nope.mp4")
    with pytest.raises(InvalidInput, match="not a regular file"):
        blobs.put_file(tmp_path)
    # A real read error in the middle of the copy: /proc/self/mem opens, but reading offset 0 fails.
    with pytest.raises(OSError, match="Input/output error"):
        blobs.put_file(Path("/proc/self/mem"))
    assert list(uploads.iterdir()) == []
    stored = blobs.put_file(make_sample_video(tmp_path / "clip.mp4", seconds=0.5))
    assert [path.name for path in uploads.rglob("*") if path.is_file()] == [stored.sha256]
