"""CLI commands of the audit layer: `trace`, `verify`, `seal`, `keygen` (mounted by `chronik.cli.app`).

Exit codes, shared with the projection commands (`chronik.cli.projections`): 0 all is well; 1 the
answer is "no" (the log was tampered with: an event edited, deleted or inserted, or the seals
altered; no event found for `trace`); 2 the command could not run (a user mistake, an unreadable
key, an unreachable store), always one line saying why, never a traceback. `verify` adds 3: the
log is intact (every event present and unchanged) but some stream's events are out of global
order, which breaks the store contract. That is an ordering fault (a store defect, or rows moved
by hand before they were sealed), not an edit, and monitoring may page someone else for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from chronik.audit import (
    Break,
    SealSigner,
    SealVerifier,
    SigningKeyError,
    TamperDetected,
    VerifyReport,
    anchor,
    generate_key_pair,
    newest_seal,
    parse_anchor,
)
from chronik.audit import seal as seal_log
from chronik.audit import trace as trace_operation
from chronik.audit import verify as verify_log
from chronik.audit.chains import ORDER_KINDS
from chronik.audit.seals import DEFAULT_SEAL_EVENTS
from chronik.audit.signing import fingerprint
from chronik.cli.projections import _out, _progress, _store
from chronik.cli.stores import StoreOption, fail, usage_error
from chronik.errors import ChronikError

EXIT_TAMPERED: Final = 1
EXIT_OUT_OF_ORDER: Final = 3
SHOWN_BREAKS: Final = 20

P = ParamSpec("P")
R = TypeVar("R")

SealSizeOption = Annotated[
    int,
    typer.Option("--seal-size", min=1, help="Events per seal: smaller seals locate damage more precisely."),
]


def _file_or_value_option(flag: str, metavar: str, help: str) -> Any:
    """The audit options that name a key file or a kept value: no default shown (there is none)."""
    return typer.Option(flag, metavar=metavar, help=help, show_default=False)


SigningKeyOption = Annotated[
    Path | None,
    _file_or_value_option(
        "--signing-key",
        "PRIVATE.pem",
        "Sign the seals made with this Ed25519 private key (PEM, mode 0600; see `chronik keygen`). "
        "Keep it off the database's machine.",
    ),
]
ExpectSealOption = Annotated[
    list[str] | None,
    _file_or_value_option(
        "--expect-seal",
        "N:HASH",
        "A seal kept outside the database (as `chronik seal` prints it): it must still be there "
        "with this hash. Catches the newest seals deleted. Repeatable.",
    ),
]
VerifyKeyOption = Annotated[
    list[Path] | None,
    _file_or_value_option(
        "--verify-key",
        "PUBLIC.pem",
        "Every seal must be signed by the private half of this Ed25519 public key (PEM). Catches "
        "a forged or altered seal. Repeatable (a seal may match any).",
    ),
]


def trace_command(
    correlation_id: Annotated[str, typer.Argument(help="The operation's correlation id.")],
    store_url: StoreOption = None,
) -> None:
    """Every event of one business operation, across streams, in the order they were recorded."""
    with _store(store_url) as store:
        events = trace_operation(store, correlation_id)
        if not events:
            fail(f"no event carries correlation id {correlation_id!r}")
        table = Table(title=f"operation {correlation_id}: {len(events)} event(s)")
        for column in ("position", "recorded at", "stream", "version", "type", "actor", "caused by"):
            table.add_column(column)
        for event in events:
            table.add_row(
                str(event.global_position),
                event.recorded_at.isoformat(timespec="seconds"),
                event.stream,
                str(event.stream_version),
                event.type,
                event.actor or "",
                event.causation_id or "",
            )
        Console(width=160).print(table)


def verify_command(
    store_url: StoreOption = None,
    no_seal: Annotated[
        bool, typer.Option("--no-seal", help="Do not seal the unsealed tail afterwards.")
    ] = False,
    seal_size: SealSizeOption = DEFAULT_SEAL_EVENTS,
    expect_seal: ExpectSealOption = None,
    verify_key: VerifyKeyOption = None,
    signing_key: SigningKeyOption = None,
) -> None:
    """Recompute every hash chain and seal; report where the log was altered (exit 1) or is out of
    order (exit 3). With --signing-key, older unsigned seals are signed once they check out."""
    expected = [_checked(parse_anchor, text) for text in expect_seal or []]
    verifier = _checked(SealVerifier.from_files, list(verify_key)) if verify_key else None
    signer = _checked(SealSigner.from_file, signing_key) if signing_key is not None else None
    with _store(store_url) as store:
        with _progress("verify") as progress:
            report = verify_log(
                store,
                seal_after=not no_seal,
                max_events=seal_size,
                progress=progress,
                expected=expected,
                verifier=verifier,
                signer=signer,
            )
        console = _out()
        if report.tampered:
            _print_breaks(console, report, "[bold red]TAMPERED[/]")
            raise typer.Exit(EXIT_TAMPERED)
        if not report.ok:
            _print_breaks(console, report, "[bold yellow]OUT OF ORDER[/]")
            console.print(
                "every event is present and unchanged, but these streams' events are not in global "
                "order (the store contract): an ordering fault of the log (a store defect, or rows "
                "moved by hand before they were sealed), not an edit or a deletion",
                highlight=False,
            )
        else:
            console.print(
                f"OK: {report.events} events in {report.streams} streams; {report.seals_verified} "
                f"seal(s) verified, {report.seals_added} added",
                highlight=False,
            )
        if report.seals_signed:
            console.print(f"signed {report.seals_signed} older seal(s) that had no signature")
        last_sealed = report.last_seal.to_position if report.last_seal is not None else 0
        if not no_seal and signer is None and not report.seals_added and last_sealed < report.head:
            console.print(
                "the newest events were left unsealed: the seals are signed here, so seal them "
                "with --signing-key (an unsigned seal would fail the signature check)",
                highlight=False,
            )
        if report.last_seal is not None:
            last = report.last_seal
            console.print(
                f"latest seal #{last.seal_no} (positions up to {last.to_position}): {last.seal_hash}\n"
                f"keep it somewhere else, it anchors everything before it: --expect-seal {anchor(last)}",
                highlight=False,
            )
        if not report.ok:
            raise typer.Exit(EXIT_OUT_OF_ORDER)


def _print_breaks(console: Console, report: VerifyReport, verdict: str) -> None:
    """The verdict with the first break that makes it (a tampered log's first edit or deletion,
    not an ordering fault before it), then the others in log order."""
    first = min(
        (found for found in report.breaks if found.kind not in ORDER_KINDS or not report.tampered),
        key=Break.sort_key,
    )
    console.print(
        f"{verdict}: {len(report.breaks)} problem(s); the first: {first.describe()}",
        highlight=False,
    )
    others = [found for found in report.breaks if found is not first]
    for found in others[: SHOWN_BREAKS - 1]:
        console.print(f"  also: {found.describe()}", highlight=False, markup=False)
    if len(others) >= SHOWN_BREAKS:
        console.print(f"  ... and {len(others) - SHOWN_BREAKS + 1} more")


def seal_command(
    store_url: StoreOption = None,
    seal_size: SealSizeOption = DEFAULT_SEAL_EVENTS,
    signing_key: SigningKeyOption = None,
) -> None:
    """Seal the events appended since the last seal (checking their chains first); print the newest
    seal's N:HASH to keep outside the database (`chronik verify --expect-seal N:HASH`)."""
    signer = _checked(SealSigner.from_file, signing_key) if signing_key is not None else None
    with _store(store_url) as store:
        try:
            new = seal_log(store, max_events=seal_size, signer=signer)
        except TamperDetected as error:
            fail(str(error), EXIT_TAMPERED)
        console = _out()
        for row in new:
            signed = " (signed)" if row.signature is not None else ""
            console.print(
                f"seal #{row.seal_no}: positions {row.from_position}..{row.to_position} "
                f"({row.event_count} events) {row.seal_hash}{signed}",
                highlight=False,
            )
        newest = new[-1] if new else newest_seal(store)
        if not new:
            console.print("nothing to seal: every event is sealed")
        if newest is not None:
            console.print(f"newest seal, keep it outside the database: {anchor(newest)}", highlight=False)


def keygen_command(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, mode 0600).")],
    public: Annotated[
        Path | None,
        typer.Option(
            "--public", help="Where to write the public key. Default: PATH.pub.", show_default=False
        ),
    ] = None,
) -> None:
    """Create an Ed25519 key pair for signing seals; never overwrites a file."""
    public_path = public if public is not None else path.with_name(path.name + ".pub")
    key = _checked(generate_key_pair, path, public_path)
    _out().print(
        f"private key: {path} (mode 0600): seal with `chronik seal --signing-key {path}`\n"
        f"public key: {public_path} (fingerprint {fingerprint(key)}): "
        f"check with `chronik verify --verify-key {public_path}`\n"
        "keep the private key away from the database's machine and its backups",
        highlight=False,
    )


def _checked(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a step that reads the command line's files or values: its error is a usage error (exit 2)."""
    try:
        return function(*args, **kwargs)
    except (SigningKeyError, ChronikError) as error:
        usage_error(str(error))
