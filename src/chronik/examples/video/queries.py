"""Questions about the pipeline, for the demo and the HTTP server: the board, one video, its timeline.

`board` reads the `video_board` projection (kept current inline by the workers started with
`--board`, or by a `ProjectionRunner`); `video` and `timeline` read the video's own stream, so they
are exact at any moment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from chronik.domain import aggregates
from chronik.errors import AggregateNotFound, StreamNotFound
from chronik.examples.video.model import Video
from chronik.examples.video.projections import VideoBoard
from chronik.projections import catch_up
from chronik.store import EventStore


class BoardRow(msgspec.Struct, frozen=True):
    video_id: str
    filename: str
    uploader: str
    status: str
    attempts: int
    worker: str | None
    wait_seconds: float | None
    processing_seconds: float | None
    total_seconds: float | None
    last_error: str | None
    output_path: str | None


class Board(msgspec.Struct, frozen=True):
    """Videos by status: counts per status, and one row per video (oldest upload first)."""

    counts: dict[str, int]
    videos: tuple[BoardRow, ...]
    position: int  # the log position the board includes


def board(store: EventStore, *, refresh: bool = False) -> Board:
    """The board as the projection has it; `refresh` first applies events it has not seen yet."""
    projection = VideoBoard(store)
    if refresh:
        catch_up(projection)
    rows = projection.query(
        "SELECT video_id, filename, uploader, status, attempts, worker, wait_seconds, processing_seconds, "
        "total_seconds, last_error, output_path FROM {videos} ORDER BY uploaded_at, video_id"
    )
    return Board(
        counts=projection.counts(),
        videos=tuple(BoardRow(*row) for row in rows),
        position=projection.position(),
    )


def video(store: EventStore, video_id: str) -> dict[str, Any]:
    """One video's current state, from its events (raises `AggregateNotFound`)."""
    loaded = aggregates.repository(store).load(Video, video_id)
    return {"video_id": video_id, "version": loaded.version, **loaded.to_dict()}


class TimelineStep(msgspec.Struct, frozen=True):
    at: datetime  # recorded_at
    since_upload_seconds: float
    type: str
    actor: str | None
    detail: dict[str, Any]


def timeline(store: EventStore, video_id: str) -> list[TimelineStep]:
    """Every step of one video, in order, with the time since its upload."""
    stream = Video.stream_name(video_id)
    try:
        events = store.read_stream(stream)
    except StreamNotFound:
        raise AggregateNotFound(stream) from None
    start = events[0].recorded_at
    return [
        TimelineStep(
            at=event.recorded_at,
            since_upload_seconds=round((event.recorded_at - start).total_seconds(), 3),
            type=event.type,
            actor=event.actor,
            detail=event.data,
        )
        for event in events
    ]
