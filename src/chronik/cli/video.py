"""`chronik video ...`: the video pipeline from a shell: which videos are where, and retry a parked one.

The same two things the HTTP API (`POST /api/video/videos/{id}/retry`) and the console's video page
offer, for an operator with a terminal and the store's URL:

    chronik video status [--status failed] [--json] --store URL
    chronik video retry VIDEO_ID [--by NAME] [--note TEXT] --store URL

`status` reads the `video_board` projection, first bringing it up to the log's head (`--no-refresh`
reads it as it is, without writing); `retry` records `VideoRetryRequested` through the `Video`
aggregate, so its rule holds here as everywhere: only a video parked as failed can be retried, and
the workers' group then does it again with a fresh set of attempts. A refusal (no such video, not
parked, a store that cannot be opened) is a one-line message and exit code 1, never a traceback;
a wrong command line is exit code 2.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from chronik.cli.help import CliApp
from chronik.cli.stores import CommandFailed, StoreOption, opened_store
from chronik.cli.tables import stdout_console
from chronik.errors import AggregateNotFound
from chronik.examples.video import Video, queries, retry_video

video_app = CliApp(
    help="The video pipeline: videos by status, and retrying a parked one.", no_args_is_help=True
)

out = stdout_console()
err = Console(stderr=True, soft_wrap=True, highlight=False)

STATUSES: Final = ("uploaded", "processing", "retrying", "succeeded", "failed")
LABELS: Final = {"failed": "failed (parked)"}
"""How the table shows a status: "failed" is the parked state (a failed attempt with retries left is
"retrying"), named in full as the console's video page does; `--status` and `--json` keep the
status's own name, which the HTTP API and the board use."""


def video_id_of(text: str) -> str:
    """A video's id, given as the id or as its stream name (`video-<id>`)."""
    prefix = Video.category + "-"
    return text[len(prefix) :] if text.startswith(prefix) else text


@video_app.command("status")
def status(
    only: Annotated[
        str | None,
        typer.Option(
            "--status",
            help=f"Only videos in this status ({', '.join(STATUSES)}; failed = parked).",
            show_default=False,
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh/--no-refresh", help="Bring the board up to the log's head first.")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per video, one per line (no line if none).")
    ] = False,
    store_url: StoreOption = None,
) -> None:
    """List videos by status (from the video_board projection), oldest upload first."""
    if only is not None and only not in STATUSES:
        raise typer.BadParameter(
            f"{only!r} is not a status; choose one of {', '.join(STATUSES)}", param_hint="--status"
        )
    with opened_store(store_url) as store:
        board = queries.board(store, refresh=refresh)
    rows = [row for row in board.videos if only is None or row.status == only]
    if as_json:
        # JSON lines, like `chronik read --json`: no matching video is no line (`jq -s` makes it
        # `[]`). A `[]` line would be the one line that is not a video and break line-by-line
        # readers, so the "nothing" is said on stderr, where a person sees it and a pipe does not.
        for row in rows:
            out.out(msgspec.json.encode(row).decode(), highlight=False)
        if not rows:
            err.print("(no videos" + (f" with status {only})" if only else ")"))
        return
    counts = ", ".join(f"{name} {board.counts[name]}" for name in STATUSES if board.counts.get(name))
    out.print(f"videos: {counts or 'none'} (board at log position {board.position})")
    if not rows:
        out.print("(no videos" + (f" with status {only})" if only else ")"))
        return
    table = Table(title="video board" + (f": {only}" if only else ""), title_justify="left")
    for column in ("video", "status"):  # whole, to be read at a glance and copied into `retry`
        table.add_column(column, no_wrap=True)
    for column in ("attempts", "file", "uploader", "worker", "last error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.video_id,
            LABELS.get(row.status, row.status),
            str(row.attempts),
            row.filename,
            row.uploader,
            row.worker or "",
            row.last_error or "",
        )
    out.print(table)


@video_app.command("retry")
def retry(
    video: Annotated[
        str, typer.Argument(metavar="VIDEO_ID", help="The video's id (or its stream, video-<id>).")
    ],
    by: Annotated[str, typer.Option("--by", help="Who asks (recorded as the event's actor).")] = "cli",
    note: Annotated[str, typer.Option("--note", help="Why (recorded in the event).")] = "",
    store_url: StoreOption = None,
) -> None:
    """Retry a video that was parked as failed: the workers process it again, with fresh attempts."""
    video_id = video_id_of(video)
    with opened_store(store_url) as store:
        try:
            version = retry_video(store, video_id, requested_by=by, note=note)
        except AggregateNotFound:
            raise CommandFailed(f"no video {video_id!r} in {store.url}") from None
    out.print(
        f"retry requested for video-{video_id} (stream version {version}); "
        "the video workers will process it again"
    )
