"""`chronik demo video`: the video pipeline example with real worker processes and real transcodes.

It makes a few short synthetic videos with PyAV, starts worker processes (`python -m
chronik.examples.video`), uploads, freezes the first worker with SIGSTOP in the middle of a job so
the others take its partitions over, resumes it to show that its first heartbeat is refused (fenced),
and prints every video's timeline and the board. The worker processes share the store by URL, so
it needs a SQLite file or a PostgreSQL server (not `memory://`). Each run uses a fresh group and
fresh video ids, so it can be run again on the same file. Without `--store` it uses a file of
its own, `chronik-video-demo.db`: on the server's `chronik.db` a `chronik serve --demo` worker would
take the demo's jobs and spoil its story.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chronik.cli.stores import demo_store_url
from chronik.cli.video import LABELS
from chronik.errors import InvalidInput
from chronik.examples.video import BlobStore, VideoBoard, make_sample_video, queries, upload_video
from chronik.projections import UnsupportedStore, catch_up
from chronik.store import EventStore, open_store

TTL = 3.0  # short leases, so the takeover is quick to watch (a working worker heartbeats every TTL/3)
SLOW = 3.0  # the first worker dawdles this long (heartbeating) after starting each job


class _Worker:
    def __init__(self, name: str, url: str, blobs: Path, group: str, log: Path, *extra: str) -> None:
        self.name, self.log = name, log
        command = [sys.executable, "-m", "chronik.examples.video", "--store", url, "--blobs", str(blobs)]
        command += [
            "--id",
            name,
            "--group",
            group,
            "--ttl",
            str(TTL),
            "--max-attempts",
            "2",
            "--board",
            *extra,
        ]
        with log.open("w") as stderr:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert self.process.stdout is not None
        if not self.process.stdout.readline():  # {"ready": true}: it has joined the group's tables
            self.process.communicate()
            tail = log.read_text()[-1500:]
            code = self.process.returncode
            raise InvalidInput(f"{name} exited with code {code} before it was ready:\n{tail}")

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        stats: dict[str, Any] = json.loads(lines[-1])["stats"] if lines else {}
        return stats


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise InvalidInput(f"the demo timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _status(store: EventStore, video_id: str) -> str:
    return str(queries.video(store, video_id)["status"])


def run_video_demo(store_url: str | None, console: Console, *, workers: int = 3) -> None:
    if importlib.util.find_spec("av") is None:
        raise InvalidInput("the video demo transcodes with PyAV: pip install 'chronik[video]'")
    url = store_url or demo_store_url("video")
    if url.startswith("memory"):
        raise InvalidInput("the video demo starts worker processes: give it a shared store (sqlite:///x.db)")
    store = open_store(url)
    workers_started: list[_Worker] = []
    try:
        _run(store, url, console, workers, workers_started)
    finally:
        for worker in workers_started:
            if worker.process.poll() is None:
                os.kill(worker.process.pid, signal.SIGCONT)
                worker.process.kill()
                worker.process.communicate()
        store.close()


def _run(store: EventStore, url: str, console: Console, count: int, started: list[_Worker]) -> None:
    run = uuid.uuid4().hex[:6]
    group = f"video-demo-{run}"
    work = Path(tempfile.mkdtemp(prefix=f"chronik-video-demo-{run}-"))
    blobs = BlobStore(work / "blobs")
    board_projection: VideoBoard | None = VideoBoard(store)
    try:
        assert board_projection is not None
        board_projection.attach_inline()
    except UnsupportedStore:
        board_projection = None
    console.rule("[bold]chronik demo: the video pipeline (an example application)")
    console.print(
        f"store: {store.url}\nblobs and worker logs: {work}\nconsumer group: {group}", highlight=False
    )

    # 1 -------------------------------------------------------------------------------------------
    console.rule("1. Sample videos, made with PyAV")
    samples = [
        make_sample_video(work / "samples" / f"clip-{index}.mp4", seconds=1.0 + 0.5 * (index % 3), seed=index)
        for index in range(4)
    ]
    corrupt = work / "samples" / "holiday.mp4"
    corrupt.write_text("not a video at all, just a text file with the wrong name\n" * 20)
    for path in samples:
        console.print(f"{path.name}: {path.stat().st_size} bytes, 320x240, 10 fps", highlight=False)
    console.print(
        f"{corrupt.name}: {corrupt.stat().st_size} bytes of text named like a video", highlight=False
    )

    # 2 -------------------------------------------------------------------------------------------
    console.rule("2. A slow worker takes the first job, and freezes")
    first = _Worker("worker-1", url, blobs.root, group, work / "worker-1.log", "--slow", str(SLOW))
    started.append(first)
    first_video = upload_video(store, blobs, samples[0], uploader="ann")
    console.print(f"uploaded {samples[0].name} as video-{first_video} (stored by SHA-256 in the blob folder)")
    _wait("worker-1 to start", lambda: len(store.read_stream(f"video-{first_video}")) >= 2, 30)
    os.kill(first.process.pid, signal.SIGSTOP)
    started_event = store.read_stream(f"video-{first_video}")[1]
    console.print(
        f"worker-1 recorded VideoProcessingStarted (epoch {started_event.data['epoch']}) and was then "
        f"[bold]frozen with SIGSTOP[/] (pid {first.process.pid}): it cannot heartbeat, "
        f"its lease runs out in {TTL:.0f}s"
    )

    # 3 -------------------------------------------------------------------------------------------
    console.rule(f"3. {count - 1} more workers join, take the partitions over, and do all the work")
    for index in range(2, count + 1):
        started.append(_Worker(f"worker-{index}", url, blobs.root, group, work / f"worker-{index}.log"))
    ids = [first_video]
    for path in samples[1:]:
        ids.append(upload_video(store, blobs, path, uploader="bob"))
    ids.append(upload_video(store, blobs, corrupt, uploader="eve"))
    console.print(f"uploaded {len(ids) - 1} more videos (one of them corrupt)")
    took = _wait(
        "every video to finish", lambda: all(_status(store, v) in ("succeeded", "failed") for v in ids), 120
    )
    console.print(
        f"all {len(ids)} videos finished {took:.1f}s later: " + ", ".join(_status(store, v) for v in ids)
    )

    # 4 -------------------------------------------------------------------------------------------
    console.rule("4. The frozen worker wakes up: its first heartbeat is refused, and it stops")
    os.kill(first.process.pid, signal.SIGCONT)
    _wait("worker-1's refused heartbeat", lambda: "fenced" in first.log.read_text(), 30)
    for line in first.log.read_text().splitlines():
        if "fenced" in line:
            console.print(f"worker-1's log: {line.split(' ', 2)[-1]}", highlight=False)
    successes = [e for e in store.read_stream(f"video-{first_video}") if e.type == "VideoProcessingSucceeded"]
    leftovers = list((blobs.root / "renditions" / first_video).glob("*-worker-1-*"))
    console.print(
        f"video-{first_video} has exactly {len(successes)} success, by {successes[0].data['worker']} "
        f"(epoch {successes[0].data['epoch']}); "
        + (
            f"worker-1's output folder {leftovers[0].name} exists but nothing refers to it"
            if leftovers
            else "worker-1 stopped before writing any output"
        )
    )

    # 5 -------------------------------------------------------------------------------------------
    console.rule("5. Every video's timeline (from its own events)")
    for video_id in ids:
        steps = queries.timeline(store, video_id)
        table = Table(title=f"video-{video_id} ({steps[0].detail.get('filename')})", title_justify="left")
        for column in ("+s", "event", "by", "epoch", "attempt", "detail"):
            table.add_column(column)
        for step in steps:
            detail = step.detail
            note = {
                "VideoUploaded": f"{detail.get('size_bytes')} bytes, "
                f"sha256 {str(detail.get('sha256'))[:12]}...",
                "VideoProcessingSucceeded": f"{detail.get('width')}x{detail.get('height')} H.264, "
                f"{detail.get('duration_seconds')}s, {detail.get('output_bytes')} bytes + PNG",
                "VideoProcessingFailed": str(detail.get("reason", ""))[:70],
                "VideoParked": f"parked after {detail.get('attempts')} attempts",
            }.get(step.type, "")
            table.add_row(
                f"{step.since_upload_seconds:.2f}",
                step.type,
                str(detail.get("worker", step.actor or "")),
                str(detail.get("epoch", "")),
                str(detail.get("attempt", "")),
                note,
            )
        console.print(table)

    # 6 -------------------------------------------------------------------------------------------
    console.rule("6. The board: videos by status, and how long each step took")
    stats = {worker.name: worker.stop() for worker in started}
    if board_projection is not None:
        catch_up(board_projection)
        board = queries.board(store)
        mine = [row for row in board.videos if row.video_id in ids]
        table = Table()
        for column in ("video", "status", "worker", "attempts", "queued s", "processing s", "total s"):
            table.add_column(column)
        for row in mine:
            table.add_row(
                row.video_id,
                LABELS.get(row.status, row.status),
                row.worker or "",
                str(row.attempts),
                *(
                    f"{value:.2f}" if value is not None else "-"
                    for value in (row.wait_seconds, row.processing_seconds, row.total_seconds)
                ),
            )
        console.print(table)
        counts: dict[str, int] = {}
        for row in mine:
            counts[row.status] = counts.get(row.status, 0) + 1
        console.print(f"this run: {counts}; the whole board: {board.counts}")
    for name, figures in stats.items():
        console.print(
            f"{name}: succeeded {figures.get('succeeded')}, "
            f"failed attempts {figures.get('failed_attempts')}, "
            f"parked {figures.get('parked')}, fenced {figures.get('fenced')}",
            highlight=False,
        )
    console.print(f"try it: chronik state video-{first_video} --store {store.url}", highlight=False)
    console.print(f"        chronik video status --store {store.url}", highlight=False)
    parked = [video_id for video_id in ids if _status(store, video_id) == "failed"]
    if parked:
        console.print(
            f"        chronik video retry {parked[0]} --store {store.url}  (sends the parked video back)",
            highlight=False,
        )
