"""`chronik demo video` as a user runs it: worker processes, one frozen and fenced, every video finished;
on the default SQLite file and, when CHRONIK_TEST_POSTGRES_URL is set, on a PostgreSQL schema of its own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chronik.events.envelope import NewEvent
from chronik.store import open_store
from tests.cli.test_subprocess import run_chronik, store_files


@pytest.mark.chaos
@pytest.mark.slow
def test_the_video_demo_fences_the_frozen_worker_and_finishes_every_video(
    process_store_url: str, tmp_path: Path
) -> None:
    # SQLite: the demo's default store, its own ./chronik-video-demo.db, as a user who gives no --store
    # gets it, beside a ./chronik.db (a `chronik serve --demo`'s) that it must leave alone (#17.6).
    default = process_store_url.startswith("sqlite")
    url = f"sqlite:///{tmp_path / 'chronik-video-demo.db'}" if default else process_store_url
    demo_args = () if default else ("--store", url)
    store_args = ("--store", url)  # for the commands run afterwards
    with open_store(f"sqlite:///{tmp_path / 'chronik.db'}") as server_store:
        server_store.append("server-1", [NewEvent(type="Started", data={})])
    server_files = store_files(tmp_path, "chronik.db")
    done = subprocess.run(
        [sys.executable, "-m", "chronik", "demo", "video", *demo_args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            "TMPDIR": str(tmp_path),
        },  # the demo keeps its files there
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert ("store: postgresql://" in text) is not default, text[:500]  # the demo ran where it was told
    assert ("store: sqlite:///./chronik-video-demo.db" in text) is default, text[:500]
    assert store_files(tmp_path, "chronik.db") == server_files
    assert "this run: {'succeeded': 4, 'failed': 1}" in text, text[-3000:]
    assert "worker-1: succeeded 0, failed attempts 0, parked 0, fenced 1" in text
    assert "has exactly 1 success" in text and "no longer holds partition" in text
    assert "heartbeat refused" in text and "worker-1 stopped before writing any output" in text
    assert "VideoParked" in text and "not a readable video" in text and "failed (parked)" in text
    video = re.search(r"chronik state (video-[0-9a-f]+)", text)
    assert video is not None
    state = json.loads(run_chronik("state", video.group(1), *store_args, cwd=tmp_path).stdout)
    assert (state["aggregate"], state["state"]["status"]) == ("Video", "succeeded")
    assert state["state"]["worker"] != "worker-1"
    store = open_store(url)
    outcomes = {}
    for info in store.list_streams(prefix="video-"):
        types = [event.type for event in store.read_stream(info.stream)]
        outcomes[info.stream] = types.count("VideoProcessingSucceeded") + types.count("VideoParked")
        assert types[-1] in ("VideoProcessingSucceeded", "VideoParked"), types  # nothing after the outcome
    store.close()
    assert len(outcomes) == 5 and set(outcomes.values()) == {1}  # each video finished exactly once
    parked = re.search(r"chronik video retry ([0-9a-f]+) ", text)  # the hint works as printed
    assert parked is not None
    assert run_chronik("video", "retry", parked.group(1), *store_args, cwd=tmp_path).returncode == 0
    listed = run_chronik("video", "status", "--status", "uploaded", "--json", *store_args, cwd=tmp_path)
    assert [json.loads(line)["video_id"] for line in listed.stdout.splitlines()] == [parked.group(1)]
    assert run_chronik("demo", "video", "--store", "memory://", cwd=tmp_path).returncode == 1
