"""The video board: every video's status, attempts and worker, and how long each step took.

Times are the events' `recorded_at` (when the store recorded each step), never the clock, so a
rebuild reproduces the same rows. `wait_seconds` is upload -> first start (time in the queue),
`processing_seconds` is the last start -> its outcome (the work itself), `total_seconds` is upload
-> final outcome. Written against the raw event types and JSON, without the aggregate's classes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chronik.events.envelope import RecordedEvent
from chronik.projections import Projection, ProjectionTx, handles, register_projection


def _video_id(event: RecordedEvent) -> str:
    return event.stream.partition("-")[2]


def _seconds(since: Any, until: datetime) -> float | None:
    if not isinstance(since, str):
        return None
    return round((until - datetime.fromisoformat(since)).total_seconds(), 3)


@register_projection
class VideoBoard(Projection):
    name = "video_board"
    version = 1
    tables = ("videos",)
    schema = (
        """CREATE TABLE {videos} (
            video_id           TEXT PRIMARY KEY,
            filename           TEXT NOT NULL,
            uploader           TEXT NOT NULL,
            size_bytes         INTEGER NOT NULL,
            status             TEXT NOT NULL,     -- uploaded | processing | retrying | succeeded | failed
            attempts           INTEGER NOT NULL,
            worker             TEXT,
            uploaded_at        TEXT NOT NULL,
            first_started_at   TEXT,
            started_at         TEXT,
            finished_at        TEXT,
            wait_seconds       REAL,
            processing_seconds REAL,
            total_seconds      REAL,
            last_error         TEXT,
            output_path        TEXT,
            duration_seconds   REAL
        )""",
        "CREATE INDEX {videos}_status ON {videos} (status)",
    )

    def _row(self, tx: ProjectionTx, event: RecordedEvent) -> dict[str, Any] | None:
        rows = tx.query(
            "SELECT uploaded_at, first_started_at, started_at FROM {videos} WHERE video_id = ?",
            (_video_id(event),),
        )
        if not rows:
            return None
        uploaded_at, first_started_at, started_at = rows[0]
        return {"uploaded_at": uploaded_at, "first_started_at": first_started_at, "started_at": started_at}

    def _set(self, tx: ProjectionTx, event: RecordedEvent, **values: Any) -> None:
        columns = ", ".join(f"{column} = ?" for column in values)  # this module's own literal names
        tx.execute(
            f"UPDATE {{videos}} SET {columns} WHERE video_id = ?", (*values.values(), _video_id(event))
        )

    @handles("VideoUploaded")
    def uploaded(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        data = event.data
        size = data.get("size_bytes")
        tx.execute(
            "INSERT INTO {videos} (video_id, filename, uploader, size_bytes, status, attempts, uploaded_at) "
            "VALUES (?, ?, ?, ?, 'uploaded', 0, ?) ON CONFLICT (video_id) DO NOTHING",
            (
                _video_id(event),
                str(data.get("filename", "")),
                str(data.get("uploader", "")),
                size if isinstance(size, int) else 0,
                event.recorded_at.isoformat(),
            ),
        )

    @handles("VideoProcessingStarted")
    def started(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        row = self._row(tx, event)
        if row is None:
            return
        at = event.recorded_at
        first = row["first_started_at"] or at.isoformat()
        self._set(
            tx,
            event,
            status="processing",
            attempts=event.data.get("attempt", 0),
            worker=event.data.get("worker"),
            started_at=at.isoformat(),
            first_started_at=first,
            wait_seconds=_seconds(row["uploaded_at"], datetime.fromisoformat(first)),
        )

    @handles("VideoProcessingSucceeded")
    def succeeded(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        row = self._row(tx, event)
        if row is None:
            return
        at = event.recorded_at
        self._set(
            tx,
            event,
            status="succeeded",
            worker=event.data.get("worker"),
            finished_at=at.isoformat(),
            processing_seconds=_seconds(row["started_at"], at),
            total_seconds=_seconds(row["uploaded_at"], at),
            last_error=None,
            output_path=event.data.get("output_path"),
            duration_seconds=event.data.get("duration_seconds"),
        )

    @handles("VideoProcessingFailed")
    def failed(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        row = self._row(tx, event)
        if row is None:
            return
        self._set(
            tx,
            event,
            status="retrying",
            last_error=str(event.data.get("reason", "")),
            processing_seconds=_seconds(row["started_at"], event.recorded_at),
        )

    @handles("VideoParked")
    def parked(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        row = self._row(tx, event)
        if row is None:
            return
        at = event.recorded_at
        self._set(
            tx,
            event,
            status="failed",
            finished_at=at.isoformat(),
            total_seconds=_seconds(row["uploaded_at"], at),
        )

    @handles("VideoRetryRequested")
    def retry_requested(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        self._set(tx, event, status="uploaded", attempts=0, finished_at=None, total_seconds=None)

    def counts(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self.query("SELECT status, count(*) FROM {videos} GROUP BY status")}
