"""`chronik video status` and `chronik video retry` on a SQLite file and on PostgreSQL, through the real
CLI (typer's runner, and one real subprocess for the exit code and stderr of a refusal).

The story: an upload whose blob is lost before a worker gets to it fails every attempt and is
parked; `status` shows it; the blob comes back ("the disk was remounted"); `retry` on anything but
the parked video is refused without writing; `retry` on it records one `VideoRetryRequested`, and
the worker then finishes the video."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chronik.cli.app import app
from chronik.examples.video import BlobStore, VideoWorker, make_sample_video, upload_video
from chronik.store import EventStore
from tests.conftest import StoreFactory
from tests.examples.test_video import finished, run_until

pytestmark = pytest.mark.sql_stores

runner = CliRunner()


def chronik(store: EventStore, *args: str) -> Result:
    return runner.invoke(app, ["video", *args, "--store", store.url])


def board_rows(store: EventStore, *args: str) -> dict[str, dict[str, object]]:
    listed = chronik(store, "status", "--json", *args)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    return {str(row["video_id"]): row for row in rows}


def event_types(store: EventStore, video_id: str) -> list[str]:
    return [event.type for event in store.read_stream(f"video-{video_id}")]


def test_status_lists_videos_and_retry_brings_a_parked_video_back(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    store = store_factory()
    blobs = BlobStore(tmp_path / "blobs")
    good = upload_video(store, blobs, make_sample_video(tmp_path / "good.mp4", seconds=1.0), uploader="ann")
    lost_clip = make_sample_video(tmp_path / "lost.mp4", seconds=1.0, seed=7)
    lost = upload_video(store, blobs, lost_clip, uploader="bob")
    blob = Path(store.read_stream(f"video-{lost}")[0].data["path"])
    blob.unlink()  # the disk holding the upload went away
    worker = VideoWorker(
        store, blobs, worker_id="w1", group="g-cli", partitions=1, max_attempts=2, backoff=0.01
    )
    run_until(worker, finished(store, good, lost))

    shown = chronik(store, "status")
    assert shown.exit_code == 0, shown.output
    assert "succeeded 1" in shown.stdout and "failed 1" in shown.stdout
    assert good in shown.stdout and lost in shown.stdout
    assert "failed (parked)" in shown.stdout  # named as the console names it: no more attempts
    rows = board_rows(store)
    assert {video: row["status"] for video, row in rows.items()} == {good: "succeeded", lost: "failed"}
    assert "No such file" in str(rows[lost]["last_error"])
    assert list(board_rows(store, "--status", "failed")) == [lost]
    assert "(no videos with status retrying)" in chronik(store, "status", "--status", "retrying").stdout
    empty = chronik(store, "status", "--status", "retrying", "--json")  # JSON lines: no video, no line
    assert (empty.exit_code, empty.stdout) == (0, ""), empty.output
    assert empty.stderr.strip() == "(no videos with status retrying)"  # said where a person sees it

    before = event_types(store, good)
    refused = chronik(store, "retry", good)
    assert refused.exit_code == 1
    assert "is succeeded: only a failed (parked) video can be retried" in refused.output
    assert "Traceback" not in refused.output and event_types(store, good) == before  # nothing written
    unknown = chronik(store, "retry", "f00dfeedbeef")
    assert unknown.exit_code == 1 and "no video 'f00dfeedbeef'" in unknown.output

    shutil.copyfile(lost_clip, blob)  # the disk is back
    retried = chronik(store, "retry", f"video-{lost}", "--by", "ops", "--note", "disk remounted")
    assert retried.exit_code == 0, retried.output
    assert f"retry requested for video-{lost}" in retried.stdout
    (request,) = [
        event for event in store.read_stream(f"video-{lost}") if event.type == "VideoRetryRequested"
    ]
    assert (request.actor, request.data) == ("ops", {"requested_by": "ops", "note": "disk remounted"})
    assert board_rows(store)[lost]["status"] == "uploaded"
    again = chronik(store, "retry", lost)  # not parked any more: refused, not recorded twice
    assert again.exit_code == 1 and "is uploaded" in again.output
    assert event_types(store, lost).count("VideoRetryRequested") == 1

    run_until(worker, lambda: board_rows(store)[lost]["status"] == "succeeded")
    assert event_types(store, lost)[-3:] == [
        "VideoRetryRequested",
        "VideoProcessingStarted",
        "VideoProcessingSucceeded",
    ]


def test_a_refused_retry_is_one_line_on_stderr_and_exit_code_1(store_factory: StoreFactory) -> None:
    """The real command in a real process: no traceback, the reason on stderr, exit code 1."""
    store = store_factory()
    done = subprocess.run(
        [sys.executable, "-m", "chronik", "video", "retry", "f00dfeedbeef", "--store", store.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"error: no video 'f00dfeedbeef' in {store.url}"
    assert done.stdout == ""
    bad = subprocess.run(
        [sys.executable, "-m", "chronik", "video", "status", "--status", "lost", "--store", store.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert bad.returncode == 2 and "'lost' is not a status" in bad.stderr and "Traceback" not in bad.stderr
