"""The video aggregate: its status is the fold of its events, and it refuses results from a replaced worker.

Statuses: uploaded -> processing -> succeeded, or processing -> retrying -> processing ... -> failed
(parked after the last attempt) -> (retry requested) uploaded -> ...

The fence in the consumer group is the first guard against a zombie worker (its commit is refused
when its lease epoch is stale); the aggregate is the second: a success or failure is accepted only
from the worker and epoch that recorded the current `VideoProcessingStarted`.
"""

from __future__ import annotations

import msgspec

from chronik.domain import Aggregate, applies
from chronik.examples.video.errors import NotProcessable, RetryNotAllowed, StaleWorker, VideoAlreadyUploaded
from chronik.examples.video.events import (
    VideoParked,
    VideoProcessingFailed,
    VideoProcessingStarted,
    VideoProcessingSucceeded,
    VideoRetryRequested,
    VideoUploaded,
)
from chronik.examples.video.media import Rendition


class VideoState(msgspec.Struct):
    filename: str = ""
    path: str = ""
    size_bytes: int = 0
    sha256: str = ""
    uploader: str = ""
    # uploaded | processing | retrying | succeeded | failed. "failed" is the parked state (only
    # `VideoParked` leads there; no more automatic attempts, only a retry by hand); a failed attempt
    # with attempts left is "retrying".
    status: str = "new"
    attempts: int = 0  # attempts since the upload or the last retry request
    worker: str | None = None
    epoch: int = 0
    last_error: str | None = None
    output_path: str | None = None
    thumbnail_path: str | None = None
    duration_seconds: float | None = None


class Video(Aggregate[VideoState]):
    category = "video"

    def upload(self, filename: str, path: str, size_bytes: int, sha256: str, uploader: str) -> None:
        if self.state.status != "new":
            raise VideoAlreadyUploaded(self.id)
        self.record(VideoUploaded(filename, path, size_bytes, sha256, uploader))

    def start(self, worker: str, epoch: int) -> None:
        """Begin an attempt. Allowed while processing too: a worker under a newer lease takes over."""
        if self.state.status not in ("uploaded", "retrying", "processing"):
            raise NotProcessable(self.id, self.state.status)
        self.record(VideoProcessingStarted(worker, epoch, self.state.attempts + 1))

    def succeed(self, worker: str, epoch: int, rendition: Rendition) -> None:
        self._check_current(worker, epoch)
        self.record(
            VideoProcessingSucceeded(
                worker,
                epoch,
                self.state.attempts,
                rendition.output_path,
                rendition.thumbnail_path,
                rendition.duration_seconds,
                rendition.width,
                rendition.height,
                rendition.output_bytes,
                rendition.thumbnail_bytes,
            )
        )

    def fail(self, worker: str, epoch: int, reason: str, *, max_attempts: int) -> None:
        """Record a failed attempt; after `max_attempts` of them, park the video as failed."""
        self._check_current(worker, epoch)
        last = self.state.attempts >= max_attempts
        self.record(VideoProcessingFailed(worker, epoch, self.state.attempts, reason, will_retry=not last))
        if last:
            self.record(VideoParked(self.state.attempts, reason))

    def request_retry(self, requested_by: str, note: str = "") -> None:
        if self.state.status != "failed":
            raise RetryNotAllowed(self.id, self.state.status)
        self.record(VideoRetryRequested(requested_by, note))

    def _check_current(self, worker: str, epoch: int) -> None:
        state = self.state
        if state.status != "processing" or state.worker != worker or state.epoch != epoch:
            raise StaleWorker(self.id, worker, epoch, state.worker, state.epoch)

    @applies(VideoUploaded)
    def _uploaded(self, event: VideoUploaded) -> None:
        state = self.state
        state.filename, state.path, state.size_bytes = event.filename, event.path, event.size_bytes
        state.sha256, state.uploader, state.status = event.sha256, event.uploader, "uploaded"

    @applies(VideoProcessingStarted)
    def _started(self, event: VideoProcessingStarted) -> None:
        state = self.state
        state.status, state.worker, state.epoch, state.attempts = (
            "processing",
            event.worker,
            event.epoch,
            event.attempt,
        )

    @applies(VideoProcessingSucceeded)
    def _succeeded(self, event: VideoProcessingSucceeded) -> None:
        state = self.state
        state.status, state.last_error = "succeeded", None
        state.output_path, state.thumbnail_path = event.output_path, event.thumbnail_path
        state.duration_seconds = event.duration_seconds

    @applies(VideoProcessingFailed)
    def _failed(self, event: VideoProcessingFailed) -> None:
        self.state.status, self.state.last_error = "retrying", event.reason

    @applies(VideoParked)
    def _parked(self, event: VideoParked) -> None:
        self.state.status = "failed"

    @applies(VideoRetryRequested)
    def _retry_requested(self, event: VideoRetryRequested) -> None:
        self.state.status, self.state.attempts, self.state.worker = "uploaded", 0, None
