"""The video pipeline as facts: uploaded, processing started, succeeded or failed, parked, retried.

A pipeline built on one status column (UPLOADED -> PENDING -> SUCCESS) and lost its way when an update
failed or a slow worker wrote after its replacement. Here each step is an event in the video's
stream; a worker's events carry its id and the lease epoch it held, so the log itself shows who
did what under which grant, and the status is only ever derived from these events.
"""

from __future__ import annotations

import msgspec


class VideoUploaded(msgspec.Struct, frozen=True):
    filename: str
    path: str  # the content-addressed blob (by SHA-256)
    size_bytes: int
    sha256: str
    uploader: str


class VideoProcessingStarted(msgspec.Struct, frozen=True):
    worker: str
    epoch: int  # the lease epoch of the video's partition the worker held
    attempt: int


class VideoProcessingSucceeded(msgspec.Struct, frozen=True):
    worker: str
    epoch: int
    attempt: int
    output_path: str
    thumbnail_path: str
    duration_seconds: float
    width: int
    height: int
    output_bytes: int
    thumbnail_bytes: int


class VideoProcessingFailed(msgspec.Struct, frozen=True):
    worker: str
    epoch: int
    attempt: int
    reason: str
    will_retry: bool


class VideoParked(msgspec.Struct, frozen=True):
    """Every attempt failed: the video waits for a person (`VideoRetryRequested`)."""

    attempts: int
    reason: str


class VideoRetryRequested(msgspec.Struct, frozen=True):
    requested_by: str
    note: str = ""


JOB_EVENTS = ("VideoUploaded", "VideoRetryRequested")
"""The events that give the workers' group something to do."""
