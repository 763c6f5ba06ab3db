"""The video pipeline example: uploads, a consumer group of transcoding workers, fencing, retries, a board.

Importing this package registers `Video` ("video") with chronik's aggregate registry, so
`chronik state video-<id>` can show any video, and the `video_board` projection by name.

    blobs = BlobStore("blobs/")
    video_id = upload_video(store, blobs, Path("clip.mp4"), uploader="ann")
    VideoWorker(store, blobs, worker_id="w1").run()          # or: python -m chronik.examples.video.worker
    queries.timeline(store, video_id)

Needs PyAV (`pip install chronik[video]`).
"""

from chronik.domain import register_aggregate
from chronik.examples.video import queries
from chronik.examples.video.blobs import BlobStore, StoredBlob
from chronik.examples.video.errors import (
    NotProcessable,
    RetryNotAllowed,
    StaleWorker,
    VideoAlreadyUploaded,
    VideoError,
)
from chronik.examples.video.media import MediaError, Rendition, make_sample_video, probe, transcode
from chronik.examples.video.model import Video, VideoState
from chronik.examples.video.projections import VideoBoard
from chronik.examples.video.services import retry_video, upload_video
from chronik.examples.video.worker import VIDEO_GROUP, VideoWorker, WorkerStats, video_group

register_aggregate(Video)

__all__ = [
    "VIDEO_GROUP",
    "BlobStore",
    "MediaError",
    "NotProcessable",
    "Rendition",
    "RetryNotAllowed",
    "StaleWorker",
    "StoredBlob",
    "Video",
    "VideoAlreadyUploaded",
    "VideoBoard",
    "VideoError",
    "VideoState",
    "VideoWorker",
    "WorkerStats",
    "make_sample_video",
    "probe",
    "queries",
    "retry_video",
    "transcode",
    "upload_video",
    "video_group",
]
