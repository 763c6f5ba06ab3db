"""`chronik serve --demo`: seeded carts, projections kept current, a receipts group that parks and replays."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chronik.server.demo import RECEIPTS_GROUP, seed_bank, seed_cart, start_demo
from chronik.store import open_store
from tests.server.conftest import ServerFactory, chronik_serve, wait_for


def test_seeding_is_done_once(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'seed.db'}") as store:
        assert seed_cart(store) > 0
        head = store.head_position()
        assert seed_cart(store) == 0 and store.head_position() == head


def test_the_demo_moves_and_its_parked_receipts_replay(make_server: ServerFactory) -> None:
    live = make_server()
    start_demo(live.state, interval=0.05, lease_ttl=3.0, seed=7, video=False)
    printer = live.state.demo["printer"]
    with live.client() as http:
        wait_for(lambda: len(http.get("/api/cart/carts").json()["carts"]) >= 5)
        wait_for(lambda: printer.printed >= 2)
        live.state.demo["shopper"].stop()  # hold the scene still
        printer.jammed = True
        http.post("/api/cart/carts/zed/items", json={"sku": "mug"})
        http.post("/api/cart/carts/zed/checkout")
        wait_for(lambda: http.get(f"/api/groups/{RECEIPTS_GROUP}").json()["parked"] >= 1)
        printer.jammed = False
        result = http.post(f"/api/groups/{RECEIPTS_GROUP}/parked/replay", json={}).json()
        assert result["failed"] == [] and result["replayed"]
        assert http.get("/api/streams/receipt-zed/events").status_code == 200
        statuses = {p["name"]: p for p in http.get("/api/projections").json()["projections"]}
        wait_for(lambda: http.get("/api/projections/carts_by_status").json()["lag"] == 0)
        assert statuses["carts_by_status"]["built"]


def test_chronik_serve_demo_answers_on_loopback(tmp_path: Path) -> None:
    with chronik_serve(f"sqlite:///{tmp_path / 'demo.db'}", "--demo") as served:
        url = served.url
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "chronik" in page.text
        assert httpx.get(f"{url}/api/streams", params={"prefix": "cart-"}).json()["streams"]
        assert len(httpx.get(f"{url}/api/bank/accounts").json()["accounts"]) == 5
        # the seeded clips are transcoded by the server's own workers (a pause of 3 s each)
        wait_for(lambda: httpx.get(f"{url}/api/video/board").json()["counts"].get("succeeded", 0) >= 1, 60)
        assert (tmp_path / "demo-blobs" / "uploads").is_dir()  # beside the database
    # uvicorn re-raises the captured SIGINT after a graceful shutdown: 130 is the shell's "stopped by Ctrl-C"
    assert served.process.returncode in (0, 130), served.errors
    assert "Traceback" not in served.errors


def test_the_demo_runs_on_a_memory_store_without_projections(make_server: ServerFactory) -> None:
    live = make_server(store=open_store("memory://"))
    start_demo(live.state, interval=3600, lease_ttl=3.0)
    with live.client() as http:
        assert http.get("/api/streams", params={"prefix": "cart-"}).json()["streams"]
        wait_for(lambda: live.state.demo["printer"].printed >= 2)
        assert http.get("/api/cart/carts").status_code == 501


def test_the_bank_is_seeded_once_with_a_year_of_history(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'bank.db'}") as store:
        assert seed_bank(store) > 100
        head = store.head_position()
        assert seed_bank(store) == 0 and store.head_position() == head
        events = store.read_stream("account-carol")
        late = [e for e in events if (e.recorded_at - e.occurred_at).days >= 1]
        # on a fresh log the history is recorded as it happened; only the branch deposit came in late
        assert [e.data["description"] for e in late] == ["cash deposit at the branch"]
        assert (events[-1].recorded_at - events[0].recorded_at).days >= 360


def test_the_demo_moves_money_and_transcodes_videos(make_server: ServerFactory) -> None:
    pytest.importorskip("av")
    live = make_server()
    start_demo(
        live.state, interval=3600, lease_ttl=3.0, bank_interval=0.2, upload_interval=0.5, transcode_pause=0
    )
    with live.client() as http:
        wait_for(
            lambda: (
                http.get("/api/bank/transfers/demo-rent-share").json()["transfer"]["status"] == "completed"
            )
        )
        rejected = http.get("/api/bank/transfers/demo-too-much").json()["transfer"]
        assert rejected["status"] == "rejected"
        wait_for(lambda: live.state.demo["clerk"].actions >= 5)
        wait_for(lambda: http.get("/api/bank/ledger").json()["unfinished_transfers"] == [])
        assert http.get("/api/bank/ledger").json()["balanced"]

        def board() -> dict[str, int]:
            counts: dict[str, int] = http.get("/api/video/board").json()["counts"]
            return counts

        # four clips and a corrupt file are seeded; the uploader adds more every half second
        wait_for(lambda: board().get("succeeded", 0) >= 5 and board().get("failed", 0) == 1, 60)
        rows = http.get("/api/video/board").json()["videos"]
        done = [row for row in rows if row["status"] == "succeeded"]
        assert {row["worker"] for row in done} <= {"demo-video-1", "demo-video-2"}
        assert http.get(done[0]["thumbnail_url"]).headers["content-type"] == "image/png"
        failed = next(row for row in rows if row["status"] == "failed")
        assert failed["filename"] == "holiday.mp4" and failed["last_error"]
    assert live.state.demo["uploader"].uploads >= 1


def test_the_uploader_stops_at_its_limit(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from chronik.examples.video import BlobStore
    from chronik.server.demo import VideoUploader

    with open_store(f"sqlite:///{tmp_path / 'clips.db'}") as store:
        uploader = VideoUploader(store, BlobStore(tmp_path / "blobs"), interval=0.01, seed=1, limit=2)
        uploader.run()  # returns by itself once the limit is reached
        assert uploader.uploads == 2 and len(store.list_streams(prefix="video-")) == 2
