"""The video pipeline example over HTTP: upload a file, watch the board, see a video's timeline and outputs.

An upload is stored by its SHA-256 in the server's blob folder (`ServerState.blobs_dir`), and only
then is `VideoUploaded` recorded (`upload_video`): an event never names a missing file. The video
workers (a consumer group, `video-workers`; `chronik serve --demo` runs two, or run
`python -m chronik.examples.video`) pick it up, so its status is read back from its stream.

Outputs (the 360p MP4 and the PNG thumbnail) are resources of their own, under `/api/video/outputs/`:
they come into being when a worker succeeds, and a video's `thumbnail_url` and `output_url` name them
only from then on (not sub-resources of every video, which would exist before they do). They are
served from the path recorded in the video's `VideoProcessingSucceeded` event, and only if that path
resolves to a file inside the blob folder: a path is never taken from the request, and a recorded
path that leads elsewhere (a symlink, an event appended by hand) is refused with 404.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import uuid
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import FileResponse

from chronik.domain import aggregates
from chronik.examples.video import BlobStore, Video, queries, retry_video, upload_video
from chronik.projections import catch_up
from chronik.server.context import AppendKey, AppPage, ReadKey, ServerState, StateDep, check_stream_access
from chronik.server.models import NO_NUL, EntityId
from chronik.server.openapi import UNDECODABLE, problems
from chronik.server.problems import Problem
from chronik.server.routes.projections import projection_for

router = APIRouter(prefix="/api/video", tags=["video example"], responses=problems(503, UNDECODABLE))
NO_VIDEO: Final = (404, "No such video.")
NO_OUTPUT: Final = (404, "No such video, or it has no outputs (yet): only a succeeded video has them.")
page = AppPage(
    name="video",
    title="Video pipeline",
    description="An example video pipeline: uploads, transcoding workers, a live board with thumbnails.",
)

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def blob_store(state: ServerState) -> BlobStore:
    """The server's blob folder (created on first use, so a server that never stores a video makes none)."""
    if state.blobs_dir is None:
        raise Problem(501, "Not supported by this server", "this server has no blob folder for videos")
    return BlobStore(state.blobs_dir)


def safe_filename(name: str | None) -> str:
    """The upload's own name, kept as a label only: no folders, no odd characters, at most 100 of them."""
    base = _UNSAFE.sub("_", Path((name or "").replace("\\", "/")).name).strip(" .")
    return base[-100:] or "upload"


def transcoder_available() -> bool:
    return importlib.util.find_spec("av") is not None


def _urls(video_id: str, status: str) -> dict[str, str | None]:
    done = status == "succeeded"
    return {
        "thumbnail_url": f"/api/video/outputs/{video_id}/thumbnail.png" if done else None,
        "output_url": f"/api/video/outputs/{video_id}/360p.mp4" if done else None,
    }


async def no_empty_fields(request: Request) -> None:
    """Refuse a form field sent empty: FastAPI reads `uploader=` as not sent (and so the default),
    while the schema says `minLength: 1`. The form is parsed once; FastAPI reuses it."""
    form = await request.form()
    empty = [name for name in ("uploader", "video_id") if form.get(name) == ""]
    if empty:
        raise Problem(
            422,
            "Invalid request",
            "the request does not match the API schema",
            errors=[{"loc": ["body", name], "msg": "must not be empty"} for name in empty],
        )


@router.get("/board", summary="Every video by status, with how long each step took")
def board(state: StateDep, key: ReadKey) -> dict[str, Any]:
    """From the `video_board` projection, caught up first (it includes every event written so far)."""
    check_stream_access(key, "video-")
    catch_up(projection_for(state, "video_board"))
    found = queries.board(state.store)
    videos = [{**msgspec.to_builtins(row), **_urls(row.video_id, row.status)} for row in found.videos]
    for row in videos:
        row.pop("output_path", None)  # a path on the server's disk: the URLs say where to fetch outputs
    return {
        "counts": found.counts,
        "videos": videos,
        "position": found.position,
        "transcoder_available": transcoder_available(),
        "workers": len(state.demo.get("video_workers", ())),
    }


@router.post(
    "/videos",
    summary="Upload a video (multipart/form-data)",
    status_code=201,
    dependencies=[Depends(no_empty_fields)],
    responses=problems((409, "The video id is taken."), (501, "This server has no blob folder for videos.")),
)
def upload(
    state: StateDep,
    key: AppendKey,
    response: Response,
    file: Annotated[
        UploadFile,
        File(
            description="the video file, not empty; at most the server's request body limit",
            json_schema_extra={"minLength": 1},
        ),
    ],
    uploader: Annotated[str, Form(min_length=1, max_length=100, pattern=NO_NUL)] = "web",
    video_id: Annotated[
        str | None, Form(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")
    ] = None,
) -> dict[str, Any]:
    """Stores the file by its SHA-256, then records `VideoUploaded`; the workers take it from there.

    The whole request is bounded by the server's body limit (413 above it, `--max-body-bytes`).
    An empty file is refused (422); any other bytes are accepted, and a file that is not a video
    fails in the workers with a reason, as a real pipeline must handle.
    """
    video_id = video_id or uuid.uuid4().hex[:12]
    check_stream_access(key, Video.stream_name(video_id))
    blobs = blob_store(state)
    incoming = blobs.root / "incoming" / uuid.uuid4().hex
    incoming.mkdir(parents=True)
    try:
        staged = incoming / safe_filename(file.filename)
        with staged.open("wb") as sink:
            shutil.copyfileobj(file.file, sink, 1 << 20)
        if staged.stat().st_size == 0:
            raise Problem(
                422, "Empty upload", "the file is empty", errors=[{"loc": ["body", "file"], "msg": "empty"}]
            )
        upload_video(state.store, blobs, staged, uploader=uploader, video_id=video_id)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    response.headers["Location"] = f"/api/video/videos/{video_id}"
    return _video_out(state, video_id)


def _video_out(state: ServerState, video_id: str) -> dict[str, Any]:
    current = queries.video(state.store, video_id)
    return {**current, **_urls(video_id, str(current.get("status")))}


@router.get(
    "/videos/{video_id}", summary="One video: its state, outputs and timeline", responses=problems(NO_VIDEO)
)
def one_video(video_id: EntityId, state: StateDep, key: ReadKey) -> dict[str, Any]:
    """Read from the video's own events, so exact at any moment; the timeline is every step, in order."""
    check_stream_access(key, Video.stream_name(video_id))
    out = _video_out(state, video_id)
    out["timeline"] = msgspec.to_builtins(queries.timeline(state.store, video_id))
    return out


@router.post(
    "/videos/{video_id}/retry",
    summary="Retry a video that was parked as failed",
    responses=problems(NO_VIDEO, (409, "The video is not parked (`RetryNotAllowed`).")),
)
def retry(video_id: EntityId, state: StateDep, key: AppendKey) -> dict[str, Any]:
    """Records `VideoRetryRequested`: the workers try again, with fresh attempts. 409 unless parked."""
    check_stream_access(key, Video.stream_name(video_id))
    retry_video(state.store, video_id, requested_by=key.name or "api")
    return _video_out(state, video_id)


def _output(state: ServerState, video_id: str, which: str) -> Path:
    """The recorded output file if it lies inside the blob folder, else 404; no path comes from a request."""
    video = aggregates.repository(state.store).load(Video, video_id)
    recorded = video.state.thumbnail_path if which == "thumbnail" else video.state.output_path
    if video.state.status != "succeeded" or not recorded:
        raise Problem(
            404, "No output yet", f"video {video_id!r} is {video.state.status}", status_now=video.state.status
        )
    root = blob_store(state).root.resolve()
    path = Path(recorded).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Problem(
            404, "Output not found", f"the {which} of video {video_id!r} is not in this server's blob folder"
        )
    return path


@router.get(
    "/outputs/{video_id}/thumbnail.png",
    summary="The video's thumbnail (PNG), once it succeeded",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The PNG."}, **problems(NO_OUTPUT)},
)
def thumbnail(video_id: EntityId, state: StateDep, key: ReadKey) -> FileResponse:
    check_stream_access(key, Video.stream_name(video_id))
    return FileResponse(
        _output(state, video_id, "thumbnail"),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600"},  # an attempt's folder is never rewritten
    )


@router.get(
    "/outputs/{video_id}/360p.mp4",
    summary="The transcoded video (360p H.264 MP4), once it succeeded",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}, "description": "The MP4."}, **problems(NO_OUTPUT)},
)
def output(video_id: EntityId, state: StateDep, key: ReadKey) -> FileResponse:
    check_stream_access(key, Video.stream_name(video_id))
    return FileResponse(
        _output(state, video_id, "output"),
        media_type="video/mp4",
        filename=f"{video_id}-360p.mp4",
        content_disposition_type="inline",
        headers={"Cache-Control": "private, max-age=3600"},
    )
