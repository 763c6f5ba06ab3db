"""The seed's zombie worker, with real processes and real signals: worker A starts a video, is frozen
with SIGSTOP past its lease, worker B takes the partition over (a higher epoch) and finishes the
video; when A is resumed with SIGCONT and tries to record its own result, the fence refuses it.
The video has exactly one success, B's, and A's output is referenced nowhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chronik.examples.video import BlobStore, make_sample_video, upload_video
from chronik.store import EventStore, open_store
from tests.examples.process_urls import process_store_urls

TTL = 3.0
SLOW = 2.5


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_worker(
    url: str, blobs: Path, name: str, group: str, log: Path, *extra: str
) -> subprocess.Popen[str]:
    with log.open("w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "chronik.examples.video", "--store", url, "--blobs", str(blobs),
             "--id", name, "--group", group, "--partitions", "1", "--ttl", str(TTL), *extra],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )  # fmt: skip


def stop(worker: subprocess.Popen[str]) -> dict[str, Any]:
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report["stats"]  # type: ignore[no-any-return]


def events_of(store: EventStore, stream: str) -> list[tuple[str, dict[str, Any]]]:
    return [(event.type, event.data) for event in store.read_stream(stream)]


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.parametrize("url", process_store_urls())
def test_a_worker_stopped_past_its_lease_is_fenced_when_it_wakes(url: str, tmp_path: Path) -> None:
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'video.db'}"
    store = open_store(url)
    blobs = BlobStore(tmp_path / "blobs")
    group = f"fence-{uuid.uuid4().hex[:8]}"
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    worker_a = start_worker(url, blobs.root, "worker-a", group, log_a, "--slow", str(SLOW))
    worker_b: subprocess.Popen[str] | None = None
    try:
        video_id = upload_video(
            store, blobs, make_sample_video(tmp_path / "clip.mp4", seconds=1.0), uploader="ann"
        )
        stream = f"video-{video_id}"
        wait_for("A to start the video", lambda: len(store.read_stream(stream)) >= 2)
        os.kill(worker_a.pid, signal.SIGSTOP)  # frozen mid-job, holding the lease it can no longer renew
        (_, started_a) = events_of(store, stream)[1]
        assert started_a["worker"] == "worker-a"

        worker_b = start_worker(url, blobs.root, "worker-b", group, log_b)
        wait_for(
            "B to finish the video", lambda: events_of(store, stream)[-1][0] == "VideoProcessingSucceeded"
        )
        os.kill(worker_a.pid, signal.SIGCONT)  # A wakes up and carries on with its stale lease
        wait_for("A's late result to be refused", lambda: "fenced" in log_a.read_text(), timeout=30)
        stats_a, stats_b = stop(worker_a), stop(worker_b)
    finally:
        for worker in (worker_a, worker_b):
            if worker is not None and worker.poll() is None:
                os.kill(worker.pid, signal.SIGCONT)
                worker.kill()
                worker.communicate()

    history = events_of(store, stream)
    types = [event_type for event_type, _ in history]
    assert types == [
        "VideoUploaded",
        "VideoProcessingStarted",
        "VideoProcessingStarted",
        "VideoProcessingSucceeded",
    ]
    started_b, succeeded = history[2][1], history[3][1]
    assert started_b["worker"] == succeeded["worker"] == "worker-b"
    assert started_b["epoch"] > started_a["epoch"] and succeeded["epoch"] == started_b["epoch"]
    assert (stats_a["succeeded"], stats_a["fenced"]) == (0, 1), log_a.read_text()[-2000:]
    assert stats_b["succeeded"] == 1
    assert "PartitionLost" in log_a.read_text() or "no longer holds partition" in log_a.read_text()
    renditions = sorted(
        path.parent.name for path in (blobs.root / "renditions" / video_id).glob("*/360p.mp4")
    )
    assert Path(succeeded["output_path"]).parent.name in renditions and "worker-b" in succeeded["output_path"]
    assert any("worker-a" in name for name in renditions)  # A's late output exists, referenced by nothing
    store.close()


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.parametrize("url", process_store_urls())
def test_a_worker_killed_mid_job_is_replaced_and_the_video_done_once(url: str, tmp_path: Path) -> None:
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'video.db'}"
    store = open_store(url)
    blobs = BlobStore(tmp_path / "blobs")
    group = f"crash-{uuid.uuid4().hex[:8]}"
    worker_a = start_worker(url, blobs.root, "worker-a", group, tmp_path / "a.log", "--slow", str(SLOW))
    worker_b: subprocess.Popen[str] | None = None
    try:
        video_id = upload_video(
            store, blobs, make_sample_video(tmp_path / "clip.mp4", seconds=1.0), uploader="ann"
        )
        stream = f"video-{video_id}"
        wait_for("A to start the video", lambda: len(store.read_stream(stream)) >= 2)
        worker_a.kill()  # SIGKILL: no goodbye, no leave; its lease has to run out
        worker_a.communicate(timeout=10)
        assert worker_a.returncode == -signal.SIGKILL
        worker_b = start_worker(url, blobs.root, "worker-b", group, tmp_path / "b.log")
        wait_for(
            "B to finish the video", lambda: events_of(store, stream)[-1][0] == "VideoProcessingSucceeded"
        )
        stats_b = stop(worker_b)
    finally:
        if worker_b is not None and worker_b.poll() is None:
            worker_b.kill()
            worker_b.communicate()
    history = events_of(store, stream)
    assert [(t, d.get("worker")) for t, d in history] == [
        ("VideoUploaded", None),
        ("VideoProcessingStarted", "worker-a"),
        ("VideoProcessingStarted", "worker-b"),
        ("VideoProcessingSucceeded", "worker-b"),
    ]
    assert history[2][1]["epoch"] > history[1][1]["epoch"] and stats_b["succeeded"] == 1
    store.close()
