"""The video pipeline over HTTP, against a real uvicorn and a real worker: upload, board, outputs, retry.

The worker is the example's `VideoWorker` in a thread of the test process, transcoding with PyAV
into the server's blob folder; outputs are checked as real PNG and MP4 files.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chronik.events.envelope import NewEvent
from chronik.examples.video import BlobStore, VideoWorker, make_sample_video, probe
from chronik.server.keys import keyring_for
from chronik.store import open_store
from tests.server.conftest import LiveServer, ServerFactory

pytest.importorskip("av")
pytestmark = pytest.mark.timeout(120)

PROBLEM = "application/problem+json"


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_sample_video(tmp_path / "clips" / "sunset.mp4", seconds=1.0, seed=3)


@pytest.fixture
def worker(live: LiveServer) -> Iterator[VideoWorker]:
    """One worker on the server's store and blob folder, one attempt per video (a bad file parks at once)."""
    assert live.state.blobs_dir is not None
    running = VideoWorker(
        live.store, BlobStore(live.state.blobs_dir), worker_id="test-worker", max_attempts=1
    )
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    yield running
    running.stop()
    thread.join(15)


def upload(http: httpx.Client, path: Path, name: str | None = None, **form: str) -> httpx.Response:
    with path.open("rb") as handle:
        return http.post(
            "/api/video/videos", files={"file": (name or path.name, handle, "video/mp4")}, data=form
        )


def status(http: httpx.Client, video_id: str) -> str:
    return str(http.get(f"/api/video/videos/{video_id}").json()["status"])


def test_upload_is_stored_by_hash_and_shows_on_the_board(
    live: LiveServer, http: httpx.Client, clip: Path
) -> None:
    sent = upload(http, clip, uploader="ann")
    assert sent.status_code == 201, sent.text
    video = sent.json()
    assert video["status"] == "uploaded" and video["filename"] == "sunset.mp4" and video["uploader"] == "ann"
    assert video["thumbnail_url"] is None
    assert live.state.blobs_dir is not None
    stored = BlobStore(live.state.blobs_dir).upload_path(video["sha256"])
    assert stored.read_bytes() == clip.read_bytes()
    assert not any((live.state.blobs_dir / "incoming").iterdir())  # the staging copy is gone
    board = http.get("/api/video/board").json()
    assert board["counts"] == {"uploaded": 1} and board["transcoder_available"] is True
    assert [row["video_id"] for row in board["videos"]] == [video["video_id"]]
    assert "output_path" not in board["videos"][0]  # paths on the server's disk stay there
    detail = http.get(f"/api/video/videos/{video['video_id']}").json()
    assert [step["type"] for step in detail["timeline"]] == ["VideoUploaded"]
    # the outputs are resources of their own, named by thumbnail_url once they exist; before, 404
    missing = http.get(f"/api/video/outputs/{video['video_id']}/thumbnail.png")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM


def test_a_worker_transcodes_and_the_outputs_are_served(
    http: httpx.Client, clip: Path, worker: VideoWorker, tmp_path: Path
) -> None:
    video_id = upload(http, clip, video_id="sunset-1").json()["video_id"]
    assert video_id == "sunset-1"
    wait_for(lambda: status(http, video_id) == "succeeded")
    board = http.get("/api/video/board").json()
    row = board["videos"][0]
    assert board["counts"] == {"succeeded": 1} and row["worker"] == "test-worker"
    assert (
        row["processing_seconds"] is not None
        and row["thumbnail_url"] == f"/api/video/outputs/{video_id}/thumbnail.png"
        and row["output_url"] == f"/api/video/outputs/{video_id}/360p.mp4"
    )
    detail = http.get(f"/api/video/videos/{video_id}").json()
    assert [s["type"] for s in detail["timeline"]] == [
        "VideoUploaded",
        "VideoProcessingStarted",
        "VideoProcessingSucceeded",
    ]
    png = http.get(row["thumbnail_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    mp4 = http.get(row["output_url"])
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    saved = tmp_path / "served.mp4"
    saved.write_bytes(mp4.content)
    codec, width, height, _ = probe(saved)
    assert (codec, height) == ("h264", 360) and width == 480
    retried = http.post(f"/api/video/videos/{video_id}/retry")
    assert retried.status_code == 409 and retried.json()["error"] == "RetryNotAllowed"


def test_a_bad_upload_is_parked_and_can_be_retried(
    http: httpx.Client, tmp_path: Path, worker: VideoWorker
) -> None:
    bad = tmp_path / "holiday.mp4"
    bad.write_text("not a video at all\n" * 10)
    video_id = upload(http, bad).json()["video_id"]
    wait_for(lambda: status(http, video_id) == "failed")
    detail = http.get(f"/api/video/videos/{video_id}").json()
    assert detail["last_error"] and detail["output_url"] is None
    retried = http.post(f"/api/video/videos/{video_id}/retry")
    assert retried.status_code == 200 and retried.json()["status"] in ("uploaded", "processing", "failed")
    wait_for(lambda: status(http, video_id) == "failed")  # still not a video: parked again
    types = [s["type"] for s in http.get(f"/api/video/videos/{video_id}").json()["timeline"]]
    assert types.count("VideoParked") == 2 and "VideoRetryRequested" in types


def test_bad_requests_are_problems(make_server: ServerFactory, clip: Path, tmp_path: Path) -> None:
    live = make_server(max_body_bytes=4096)
    with live.client() as http:
        empty = tmp_path / "empty.mp4"
        empty.write_bytes(b"")
        refused = upload(http, empty)
        assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
        assert http.post("/api/video/videos", data={"uploader": "x"}).status_code == 422  # no file
        big = upload(http, clip)
        assert clip.stat().st_size > 4096 and big.status_code == 413
        assert big.headers["content-type"] == PROBLEM
        small = tmp_path / "small.bin"
        small.write_bytes(b"x" * 100)
        assert upload(http, small, video_id="bad id!").status_code == 422
        # FastAPI reads an empty form field as not sent (the default); the schema says minLength 1
        for field in ("uploader", "video_id"):
            empty_field = upload(http, small, **{field: ""})
            assert empty_field.status_code == 422, empty_field.text  # it was a 201
            assert empty_field.json()["errors"] == [{"loc": ["body", field], "msg": "must not be empty"}]
        assert upload(http, small, uploader="x\u0000y").status_code == 422  # kept in the metadata
        created = upload(http, small, video_id="one")
        assert created.status_code == 201 and created.headers["location"] == "/api/video/videos/one"
        again = upload(http, small, video_id="one")
        assert again.status_code == 409 and again.json()["stream"] == "video-one"  # the id is taken
        assert http.get("/api/video/videos/nope").status_code == 404
        assert http.get("/api/video/outputs/nope/360p.mp4").status_code == 404
        assert http.post("/api/video/videos/nope/retry").status_code == 404
        assert http.get("/api/video/outputs/..%2F..%2Fetc/thumbnail.png").status_code in (404, 422)


def test_uploaded_names_are_labels_never_paths(live: LiveServer, http: httpx.Client, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"abc" * 50)
    video = upload(http, data, name="../../../etc/passwd").json()
    assert video["filename"] == "passwd"
    assert live.state.blobs_dir is not None
    assert Path(video["path"]).resolve().is_relative_to(live.state.blobs_dir.resolve())
    odd = upload(http, data, name="..").json()
    assert odd["filename"] == "upload"


def test_outputs_outside_the_blob_folder_are_never_served(
    live: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    """A recorded path that leads out of the blob folder (an event appended by hand) is refused, not read."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    data = tmp_path / "data.bin"
    data.write_bytes(b"abc" * 50)
    video_id = upload(http, data, video_id="forged").json()["video_id"]
    assert live.state.blobs_dir is not None
    inside = live.state.blobs_dir / "renditions" / "link.png"
    inside.parent.mkdir(parents=True)
    inside.symlink_to(secret)  # inside by name, outside once resolved
    for thumbnail in (str(secret), str(live.state.blobs_dir / ".." / "secret.png"), str(inside)):
        live.store.append(
            f"video-{video_id}",
            [
                NewEvent(type="VideoProcessingStarted", data={"worker": "w", "epoch": 1, "attempt": 1}),
                NewEvent(
                    type="VideoProcessingSucceeded",
                    data={
                        "worker": "w",
                        "epoch": 1,
                        "attempt": 1,
                        "output_path": thumbnail,
                        "thumbnail_path": thumbnail,
                        "duration_seconds": 1.0,
                        "width": 2,
                        "height": 2,
                        "output_bytes": 1,
                        "thumbnail_bytes": 1,
                    },
                ),
            ],
        )
        assert status(http, video_id) == "succeeded"
        for which in ("thumbnail.png", "360p.mp4"):
            refused = http.get(f"/api/video/outputs/{video_id}/{which}")
            assert refused.status_code == 404, thumbnail
            assert b"secret" not in refused.content


def test_scopes_apply(live: LiveServer, clip: Path) -> None:
    ring = keyring_for(live.store)
    _, reader = ring.create("reader", ["read"], now=live.store.clock())
    _, writer = ring.create("writer", ["append"], now=live.store.clock())
    _, carts = ring.create("carts", ["read", "append"], ["cart-"], now=live.store.clock())
    live.state.forget_key_cache()
    with live.client() as anonymous:
        assert anonymous.get("/api/video/board").status_code == 401
    with live.client(writer) as http:
        video_id = upload(http, clip).json()["video_id"]
        assert http.get("/api/video/board").status_code == 403
    with live.client(reader) as http:
        assert http.get(f"/api/video/videos/{video_id}").status_code == 200
        assert upload(http, clip).status_code == 403
        assert http.post(f"/api/video/videos/{video_id}/retry").status_code == 403
    with live.client(carts) as http:
        assert http.get("/api/video/board").status_code == 403
        assert http.get(f"/api/video/outputs/{video_id}/thumbnail.png").status_code == 403


def test_the_board_needs_sql(make_server: ServerFactory) -> None:
    live = make_server(store=open_store("memory://"))
    with live.client() as http:
        assert http.get("/api/video/board").status_code == 501


def test_the_blob_folder_sits_beside_the_database(tmp_path: Path) -> None:
    from chronik.server.app import default_blobs_dir

    with open_store(f"sqlite:///{tmp_path / 'shop.db'}") as store:
        assert default_blobs_dir(store) == tmp_path / "shop-blobs"
    with open_store("memory://") as memory:
        folder = default_blobs_dir(memory)
        assert folder.is_absolute() and not folder.exists()  # a temporary folder, made on first upload
