"""The seed's zombie worker, with real processes and real signals: worker A starts a video, is frozen
with SIGSTOP past its lease (a stopped process cannot heartbeat), worker B takes the partition over
(a higher epoch) and finishes the video; when A is resumed with SIGCONT, its first heartbeat is
refused by the fence and it stops. The video has exactly one success, B's, and nothing of A's
reaches the log. And the other side of the heartbeat: a worker whose real transcode takes several
lease TTLs keeps its lease while it works, and finishes the video itself, with a second worker
waiting to take over the moment the lease runs out."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chronik.examples.video import BlobStore, make_sample_video, queries, upload_video
from chronik.examples.video.media import transcode
from chronik.store import EventStore, open_store

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
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )  # fmt: skip


def kill_leftovers(*workers: subprocess.Popen[str] | None) -> None:
    """After a failed test: kill the workers still running (resumed first, in case one is stopped)."""
    for worker in workers:
        if worker is not None and worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
            worker.kill()
            worker.communicate()


def read_line(worker: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, Any]:
    """The worker's next JSON line on stdout, or a failure (not a hang) if none comes in time."""
    assert worker.stdout is not None
    ready, _, _ = select.select([worker.stdout], [], [], timeout)
    assert ready, f"no line from the worker in {timeout}s"
    line = worker.stdout.readline()
    assert line, f"the worker exited with code {worker.wait()}"
    return json.loads(line)  # type: ignore[no-any-return]


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
def test_a_worker_stopped_past_its_lease_is_fenced_when_it_wakes(
    process_store_url: str, tmp_path: Path
) -> None:
    url = process_store_url
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
        kill_leftovers(worker_a, worker_b)

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
    text_a = log_a.read_text()
    assert "no longer holds partition" in text_a
    # A found out at its first heartbeat after waking, before any of its output was written.
    assert "heartbeat refused" in text_a, text_a[-2000:]
    renditions = sorted(
        path.parent.name for path in (blobs.root / "renditions" / video_id).glob("*/360p.mp4")
    )
    assert Path(succeeded["output_path"]).parent.name in renditions and "worker-b" in succeeded["output_path"]
    assert not any("worker-a" in path.name for path in (blobs.root / "renditions" / video_id).iterdir())
    store.close()


@pytest.mark.chaos
@pytest.mark.slow
def test_a_worker_stopped_between_its_transcode_and_its_success_write_has_the_write_refused(
    process_store_url: str, tmp_path: Path
) -> None:
    """The last moment a zombie can be frozen: its output is complete, only the write is left. No
    heartbeat stands between waking up and that write, so the fenced commit itself must refuse it."""
    url = process_store_url
    store = open_store(url)
    blobs = BlobStore(tmp_path / "blobs")
    group = f"late-{uuid.uuid4().hex[:8]}"
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    worker_a = start_worker(url, blobs.root, "worker-a", group, log_a, "--pause-before", "succeeded")
    worker_b: subprocess.Popen[str] | None = None
    try:
        assert read_line(worker_a)["ready"]
        video_id = upload_video(
            store, blobs, make_sample_video(tmp_path / "clip.mp4", seconds=1.0), uploader="ann"
        )
        stream = f"video-{video_id}"
        assert read_line(worker_a) == {"paused_before": "succeeded"}  # transcoded, about to write
        os.kill(worker_a.pid, signal.SIGSTOP)
        (output_a,) = (blobs.root / "renditions" / video_id).glob("*-worker-a-*/360p.mp4")
        assert output_a.stat().st_size > 0  # A's work is done; only its write is missing
        started_a = events_of(store, stream)[1][1]

        worker_b = start_worker(url, blobs.root, "worker-b", group, log_b)
        wait_for(
            "B to finish the video", lambda: events_of(store, stream)[-1][0] == "VideoProcessingSucceeded"
        )
        os.kill(worker_a.pid, signal.SIGCONT)
        assert worker_a.stdin is not None
        worker_a.stdin.write("go\n")  # A carries on with the write it was about to make
        worker_a.stdin.flush()
        wait_for("A's late success write to be refused", lambda: "fenced" in log_a.read_text())
        stats_a, stats_b = stop(worker_a), stop(worker_b)
    finally:
        kill_leftovers(worker_a, worker_b)

    text_a = log_a.read_text()
    assert "succeeded refused" in text_a and "no longer holds partition" in text_a, text_a[-2000:]
    assert "heartbeat refused" not in text_a  # the write itself was refused, nothing before it
    assert (stats_a["succeeded"], stats_a["fenced"]) == (0, 1), text_a[-2000:]
    assert stats_b["succeeded"] == 1
    history = events_of(store, stream)
    assert [(t, d.get("worker")) for t, d in history] == [
        ("VideoUploaded", None),
        ("VideoProcessingStarted", "worker-a"),
        ("VideoProcessingStarted", "worker-b"),
        ("VideoProcessingSucceeded", "worker-b"),
    ]
    succeeded = history[3][1]
    assert succeeded["epoch"] > started_a["epoch"] and "worker-b" in succeeded["output_path"]
    (row,) = [row for row in queries.board(store, refresh=True).videos if row.video_id == video_id]
    assert (row.status, row.worker, row.output_path) == ("succeeded", "worker-b", succeeded["output_path"])
    # A deleted its refused output; B's, the one the log names, is all that is left.
    folders = [path.name for path in (blobs.root / "renditions" / video_id).iterdir()]
    assert folders == [Path(succeeded["output_path"]).parent.name], folders
    store.close()


@pytest.mark.chaos
@pytest.mark.slow
def test_a_worker_backing_off_longer_than_its_lease_keeps_the_lease(
    process_store_url: str, tmp_path: Path
) -> None:
    """A failed attempt is retried after a backoff (here 3 s) longer than the lease (1 s), with a
    second worker waiting to take the partition the moment the lease runs out: the backoff
    heartbeats, so the first worker keeps its job, retries and parks it, and is never fenced."""
    url = process_store_url
    store = open_store(url)
    blobs = BlobStore(tmp_path / "blobs")
    group = f"backoff-{uuid.uuid4().hex[:8]}"
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    options = ("--ttl", "1.0", "--backoff", "3.0", "--max-backoff", "3.0", "--max-attempts", "2")
    worker_a = start_worker(url, blobs.root, "worker-a", group, log_a, *options)
    worker_b: subprocess.Popen[str] | None = None
    try:
        assert read_line(worker_a)["ready"]
        wait_for("A to hold the partition", lambda: "worker-a holds partition 0" in log_a.read_text())
        worker_b = start_worker(url, blobs.root, "worker-b", group, log_b, *options)
        assert read_line(worker_b)["ready"]
        junk = tmp_path / "junk.mp4"
        junk.write_text("not a video\n" * 100)
        video_id = upload_video(store, blobs, junk, uploader="eve")
        stream = f"video-{video_id}"
        wait_for("the video to be parked", lambda: events_of(store, stream)[-1][0] == "VideoParked")
        stats_a, stats_b = stop(worker_a), stop(worker_b)
    finally:
        kill_leftovers(worker_a, worker_b)
    history = store.read_stream(stream)
    assert [(event.type, event.data.get("worker")) for event in history] == [
        ("VideoUploaded", None),
        ("VideoProcessingStarted", "worker-a"),
        ("VideoProcessingFailed", "worker-a"),
        ("VideoProcessingStarted", "worker-a"),
        ("VideoProcessingFailed", "worker-a"),
        ("VideoParked", None),
    ], log_a.read_text()[-2000:]
    waited = (history[3].recorded_at - history[2].recorded_at).total_seconds()
    assert waited >= 3.0, f"the backoff took only {waited:.2f}s: it must outlive the 1s lease"
    assert (stats_a["failed_attempts"], stats_a["parked"], stats_a["fenced"]) == (2, 1, 0), stats_a
    assert stats_a["heartbeats"] >= 3, stats_a  # renewed while backing off
    assert stats_b["jobs"] == 0, stats_b  # B never got the partition from the healthy worker
    store.close()


@pytest.mark.chaos
@pytest.mark.slow
def test_a_slow_but_alive_worker_heartbeats_and_finishes_its_long_transcode(
    process_store_url: str, tmp_path: Path
) -> None:
    url = process_store_url
    store = open_store(url)
    blobs = BlobStore(tmp_path / "blobs")
    group = f"alive-{uuid.uuid4().hex[:8]}"
    long_clip = make_sample_video(tmp_path / "long.mp4", seconds=48, fps=25)  # 1200 frames to transcode
    # The lease must be shorter than the transcode on this machine, however fast or loaded it is:
    # time one transcode of the clip here, and give the workers a lease of 40% of that.
    started = time.monotonic()
    transcode(long_clip, tmp_path / "probe" / "360p.mp4", tmp_path / "probe" / "thumbnail.png")
    ttl = max(0.3, round((time.monotonic() - started) * 0.4, 2))
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    worker_a = start_worker(url, blobs.root, "worker-a", group, log_a, "--ttl", str(ttl))
    worker_b: subprocess.Popen[str] | None = None
    try:
        video_id = upload_video(store, blobs, long_clip, uploader="ann")
        stream = f"video-{video_id}"
        wait_for("A to start the video", lambda: len(store.read_stream(stream)) >= 2)
        # B joins while A transcodes: it claims the partition the moment A's lease runs out.
        worker_b = start_worker(url, blobs.root, "worker-b", group, log_b, "--ttl", str(ttl))
        wait_for("the video to finish", lambda: events_of(store, stream)[-1][0] == "VideoProcessingSucceeded")
        stats_a, stats_b = stop(worker_a), stop(worker_b)
    finally:
        kill_leftovers(worker_a, worker_b)
    history = store.read_stream(stream)
    assert [(event.type, event.data.get("worker")) for event in history] == [
        ("VideoUploaded", None),
        ("VideoProcessingStarted", "worker-a"),
        ("VideoProcessingSucceeded", "worker-a"),
    ], log_a.read_text()[-2000:]
    worked = (history[2].recorded_at - history[1].recorded_at).total_seconds()
    assert worked > ttl, f"the transcode took only {worked:.2f}s: it must outlive the {ttl}s lease"
    assert (stats_a["succeeded"], stats_a["fenced"]) == (1, 0)
    assert stats_a["heartbeats"] >= 2, stats_a  # renewed at least twice while transcoding
    assert stats_b["jobs"] == 0, stats_b  # B never got the partition while A was alive
    store.close()


@pytest.mark.chaos
@pytest.mark.slow
def test_a_worker_killed_mid_job_is_replaced_and_the_video_done_once(
    process_store_url: str, tmp_path: Path
) -> None:
    url = process_store_url
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
        kill_leftovers(worker_b)
    history = events_of(store, stream)
    assert [(t, d.get("worker")) for t, d in history] == [
        ("VideoUploaded", None),
        ("VideoProcessingStarted", "worker-a"),
        ("VideoProcessingStarted", "worker-b"),
        ("VideoProcessingSucceeded", "worker-b"),
    ]
    assert history[2][1]["epoch"] > history[1][1]["epoch"] and stats_b["succeeded"] == 1
    store.close()
