"""What users do to the pipeline: upload a file, and retry a video that was parked as failed."""

from __future__ import annotations

import uuid
from pathlib import Path

from chronik.domain import aggregates
from chronik.examples.video.blobs import BlobStore
from chronik.examples.video.model import Video
from chronik.store import EventStore


def upload_video(
    store: EventStore, blobs: BlobStore, source: Path, *, uploader: str, video_id: str | None = None
) -> str:
    """Store the file by its SHA-256 and record `VideoUploaded`; returns the video id.

    The blob is written (and fsynced) before the event, so an event never names a missing file; a
    crash in between leaves only an unreferenced blob, which is harmless.
    """
    video_id = video_id or uuid.uuid4().hex[:12]
    blob = blobs.put_file(Path(source))
    video = Video(video_id)
    video.upload(Path(source).name, blob.path, blob.size_bytes, blob.sha256, uploader)
    aggregates.repository(store).save(video, metadata={"actor": uploader, "correlation_id": video_id})
    return video_id


def retry_video(store: EventStore, video_id: str, *, requested_by: str, note: str = "") -> int:
    """Ask the workers to try a parked (failed) video again, with a fresh set of attempts.

    Returns the stream version of the `VideoRetryRequested` event. Raises `RetryNotAllowed` unless
    the video is parked as failed.
    """
    _, result = aggregates.repository(store).execute(
        Video,
        video_id,
        lambda v: v.request_retry(requested_by, note),
        metadata={"actor": requested_by, "correlation_id": video_id},
    )
    assert result.stream_version is not None
    return result.stream_version
