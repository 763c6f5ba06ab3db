"""The video pipeline's rules, one `DomainError` each: a refused command records nothing."""

from __future__ import annotations

from chronik.errors import DomainError


class VideoError(DomainError):
    """Base class of the video example's domain errors."""


class VideoAlreadyUploaded(VideoError):
    def __init__(self, video_id: str) -> None:
        self.video_id = video_id
        super().__init__(f"video {video_id!r} is already uploaded")


class NotProcessable(VideoError):
    def __init__(self, video_id: str, status: str) -> None:
        self.video_id = video_id
        self.status = status
        super().__init__(f"video {video_id!r} is {status}: there is nothing to process")


class StaleWorker(VideoError):
    """A result from a worker that is no longer the one processing the video (it was replaced)."""

    def __init__(
        self, video_id: str, worker: str, epoch: int, current: str | None, current_epoch: int
    ) -> None:
        self.video_id = video_id
        self.worker = worker
        self.epoch = epoch
        self.current = current
        self.current_epoch = current_epoch
        super().__init__(
            f"video {video_id!r}: result of worker {worker!r} (epoch {epoch}) refused; "
            f"the video is being processed by {current!r} (epoch {current_epoch})"
        )


class RetryNotAllowed(VideoError):
    def __init__(self, video_id: str, status: str) -> None:
        self.video_id = video_id
        self.status = status
        super().__init__(f"video {video_id!r} is {status}: only a failed (parked) video can be retried")
