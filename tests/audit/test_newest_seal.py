"""The newest seal, protected from outside the database, on both SQL stores.

Deleting the newest seal leaves a seal table that is consistent in itself: its events are then
merely unsealed. Two defences, each tested here with raw SQL behind the store's back: the
newest seal's N:HASH kept elsewhere (`expected` / `--expect-seal`) and Ed25519-signed seals
(`signer` / `--signing-key`, `verifier` / `--verify-key`) with a key the database never sees.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chronik import NewEvent
from chronik.audit import SealSigner, SealVerifier, anchor, generate_key_pair, newest_seal, seal, verify
from chronik.audit.seals import VerifyReport, finish, fold, seal_digest
from chronik.cli.app import app
from chronik.errors import ChronikError
from chronik.events.chain import event_hash
from chronik.projections import dialect_for
from chronik.store import EventStore
from tests.conftest import StoreFactory
from tests.raw_sql import execute_behind_the_store, log_positions, tamper

pytestmark = pytest.mark.sql_stores


@pytest.fixture
def store(store_factory: StoreFactory) -> EventStore:
    """12 events of acct-a and acct-b, alternating (acct-b's last is the 12th): three seals of 4."""
    store = store_factory()
    for round_ in range(6):
        for stream in ("acct-a", "acct-b"):
            store.append(stream, [NewEvent(type="Deposited", data={"amount": round_})])
    return store


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "seal-key.pem", tmp_path / "seal-key.pem.pub"
    generate_key_pair(private, public)
    return private, public


def kinds(report: VerifyReport) -> list[tuple[str, int | None]]:
    return [(b.kind, b.seal_no) for b in report.breaks]


def forge_last_event_of(store: EventStore, stream: str) -> None:
    """Rewrite a stream's last event and its hash, as someone who knows the algorithm would."""
    dialect = dialect_for(store)
    position = [e.global_position for e in store.read_stream(stream)][-1]
    with dialect.read_snapshot(store) as connection:
        row = dialect.chain_rows(connection, position, position, 1)[0]
        before = dialect.stored_event(connection, stream, row[3] - 1)
    assert before is not None
    forged = '{"amount":1000000}'
    new_hash = event_hash(before[1], *row[1:9], forged)
    tamper(
        store,
        "UPDATE events SET data = ?, event_hash = ? WHERE global_position = ?",
        forged,
        new_hash,
        position,
    )


def forge_newest_seal(store: EventStore) -> None:
    """Seal the unsealed tail by hand, with the public algorithm and raw SQL, as a forger would
    (`seal` itself refuses to add an unsigned seal after a signed one)."""
    dialect = dialect_for(store)
    with dialect.read_snapshot(store) as connection:
        previous = dialect.seals(connection)[-1]
        rows = dialect.chain_rows(connection, previous.to_position + 1, store.head_position(), 1000)
    number, first = previous.seal_no + 1, previous.to_position + 1
    digest = seal_digest(number, first, previous.seal_hash)
    for row in rows:
        fold(digest, row[0], row[10])
    forged = finish(digest, rows[-1][0], len(rows))
    tamper(
        store,
        "INSERT INTO seals (seal_no, from_position, to_position, event_count, previous_seal_hash, seal_hash, "
        "sealed_at) VALUES (?, ?, ?, ?, ?, ?, '2030-01-01T00:00:00.000000Z')",
        *(number, first, rows[-1][0], len(rows), previous.seal_hash, forged),
    )


# -- the expected seal ---------------------------------------------------------------------------


def test_the_newest_seal_deleted_passes_alone_and_is_caught_by_the_expected_seal(store: EventStore) -> None:
    newest = seal(store, max_events=4)[-1]
    assert newest.seal_no == 3
    kept = (3, newest.seal_hash)
    assert verify(store, seal_after=False, expected=[kept]).ok  # untouched
    tamper(store, "DELETE FROM seals WHERE seal_no = 3")
    assert verify(store, seal_after=False).ok  # the gap this closes: nothing inside the database shows it
    report = verify(store, seal_after=False, expected=[kept])
    assert kinds(report) == [("expected-seal", 3)] and report.tampered
    assert (
        "seal #3 is not in the seal table (it ends at seal #2): seals were deleted" in report.breaks[0].detail
    )


def test_the_newest_seal_deleted_with_events_of_its_range_is_caught(store: EventStore) -> None:
    newest = seal(store, max_events=4)[-1]
    p = log_positions(store)
    tamper(store, "DELETE FROM seals WHERE seal_no = 3")
    tamper(store, "DELETE FROM events WHERE global_position = ?", p[10])  # acct-a's last event
    assert verify(store, seal_after=False).ok  # a stream's last event, unsealed: no chain shows it
    report = verify(store, seal_after=False, expected=[(3, newest.seal_hash)])
    assert kinds(report) == [("expected-seal", 3)]


def test_the_newest_seal_made_again_over_changed_events_is_caught(store: EventStore) -> None:
    newest = seal(store, max_events=4)[-1]
    tamper(store, "DELETE FROM seals WHERE seal_no = 3")
    forge_last_event_of(store, "acct-b")
    again = verify(store, max_events=4)  # a clean verify seals the forgery: seal #3 again
    assert again.ok and again.seals_added == 1 and again.last_seal is not None
    assert again.last_seal.seal_hash != newest.seal_hash
    report = verify(store, seal_after=False, expected=[(3, newest.seal_hash)])
    assert kinds(report) == [("expected-seal", 3)]
    assert (
        f"has hash {again.last_seal.seal_hash}, not the expected {newest.seal_hash}"
        in report.breaks[0].detail
    )


def test_an_old_expected_seal_still_holds_after_more_seals(store: EventStore) -> None:
    first = seal(store, max_events=4)[0]
    store.append("acct-c", [NewEvent(type="Opened", data={})])
    seal(store)
    assert verify(store, seal_after=False, expected=[(1, first.seal_hash)]).ok
    assert newest_seal(store) is not None and anchor(first) == f"1:{first.seal_hash}"


# -- signed seals ---------------------------------------------------------------------------------


def test_signed_seals_verify_and_a_forged_seal_does_not(store: EventStore, keys: tuple[Path, Path]) -> None:
    signer, verifier = SealSigner.from_file(keys[0]), SealVerifier.from_files([keys[1]])
    made = seal(store, max_events=4, signer=signer)
    assert all(row.signature is not None for row in made)
    assert verify(store, seal_after=False, verifier=verifier).ok
    # The forger deletes the newest seal, rewrites an event of its range and seals it again
    # (with the public algorithm, without the key): everything agrees but the signature.
    tamper(store, "DELETE FROM seals WHERE seal_no = 3")
    forge_last_event_of(store, "acct-b")
    forge_newest_seal(store)
    assert verify(store, seal_after=False).ok  # without the key check, the forgery holds
    report = verify(store, seal_after=False, verifier=verifier)
    assert kinds(report) == [("signature", 3)]
    assert "the seal is not signed" in report.breaks[0].detail


def test_a_seal_signed_with_another_key_or_altered_fails(
    store: EventStore, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    verifier = SealVerifier.from_files([keys[1]])
    generate_key_pair(tmp_path / "forger.pem", tmp_path / "forger.pem.pub")
    seal(store, max_events=4, signer=SealSigner.from_file(keys[0]))
    tamper(store, "DELETE FROM seals WHERE seal_no = 3")
    seal(store, max_events=4, signer=SealSigner.from_file(tmp_path / "forger.pem"))
    report = verify(store, seal_after=False, verifier=verifier)
    assert (
        kinds(report) == [("signature", 3)]
        and "does not verify with the given key(s)" in report.breaks[0].detail
    )
    # A rotated key: seals verify with any of the keys given.
    both = SealVerifier.from_files([keys[1], tmp_path / "forger.pem.pub"])
    assert verify(store, seal_after=False, verifier=both).ok
    tamper(store, "UPDATE seals SET sealed_at = '2000-01-01T00:00:00.000000Z' WHERE seal_no = 2")
    assert kinds(verify(store, seal_after=False, verifier=both)) == [("signature", 2)]


def test_signing_alone_does_not_show_the_newest_seal_deleted(
    store: EventStore, keys: tuple[Path, Path]
) -> None:
    """What docs/AUDIT.md says: a signature proves a seal, not that no seal is missing."""
    newest = seal(store, max_events=4, signer=SealSigner.from_file(keys[0]))[-1]
    tamper(store, "DELETE FROM seals WHERE seal_no = 3")
    verifier = SealVerifier.from_files([keys[1]])
    assert verify(store, seal_after=False, verifier=verifier).ok
    report = verify(store, seal_after=False, verifier=verifier, expected=[(3, newest.seal_hash)])
    assert kinds(report) == [("expected-seal", 3)]


def test_verify_signs_older_unsigned_seals_once_they_check_out(
    store: EventStore, keys: tuple[Path, Path]
) -> None:
    seal(store, max_events=4)  # before signatures were adopted
    verifier = SealVerifier.from_files([keys[1]])
    assert [kind for kind, _ in kinds(verify(store, seal_after=False, verifier=verifier))] == [
        "signature"
    ] * 3
    signed = verify(store, signer=SealSigner.from_file(keys[0]))
    assert signed.ok and signed.seals_signed == 3
    assert verify(store, seal_after=False, verifier=verifier).ok


def test_signed_seals_stay_signed(store: EventStore, keys: tuple[Path, Path]) -> None:
    """No unsigned seal after a signed one: it would fail every later signature check."""
    signer, verifier = SealSigner.from_file(keys[0]), SealVerifier.from_files([keys[1]])
    seal(store, max_events=4, signer=signer)
    store.append("acct-c", [NewEvent(type="Opened", data={})])
    with pytest.raises(ChronikError, match=r"the newest seal \(#3\) is signed: seal with the signing key"):
        seal(store)
    checked = verify(store, verifier=verifier)  # no signer: the tail is left unsealed, not sealed unsigned
    assert checked.ok and checked.seals_added == 0
    assert verify(store, seal_after=False).seals_added == 0 and verify(store).seals_added == 0
    assert verify(store, signer=signer).seals_added == 1
    assert verify(store, seal_after=False, verifier=verifier).ok


def test_a_seal_table_made_before_signatures_still_verifies_and_is_migrated(
    store: EventStore, keys: tuple[Path, Path]
) -> None:
    seal(store, max_events=4)
    execute_behind_the_store(store, "ALTER TABLE seals DROP COLUMN signature")  # as older chronik made it
    assert verify(store, seal_after=False).ok
    store.append("acct-c", [NewEvent(type="Opened", data={})])
    (new,) = seal(store, signer=SealSigner.from_file(keys[0]))  # adds the column, then the seal
    assert new.signature is not None
    assert verify(store, seal_after=False, expected=[(4, new.seal_hash)]).ok
    dialect = dialect_for(store)
    stored = dialect.seals(dialect.read_connection(store))
    assert [row.signature is not None for row in stored] == [False, False, False, True]


# -- through the command line -----------------------------------------------------------------------


runner = CliRunner()


def chronik(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_keygen_seal_and_verify_through_the_cli(store: EventStore, tmp_path: Path) -> None:
    private, public = tmp_path / "k.pem", tmp_path / "k.pem.pub"
    code, output = chronik("keygen", str(private))
    assert code == 0, output
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and public.exists()
    assert "fingerprint" in output and f"--verify-key {public}" in output
    code, output = chronik("keygen", str(private))
    assert code == 2 and "already exists: refusing to overwrite a key" in output
    code, output = chronik("seal", "--store", store.url, "--seal-size", "4", "--signing-key", str(private))
    assert code == 0, output
    assert output.count("(signed)") == 3
    newest = newest_seal(store)
    assert newest is not None
    assert f"newest seal, keep it outside the database: 3:{newest.seal_hash}" in output
    untouched = ("verify", "--store", store.url, "--no-seal", "--verify-key", str(public))
    code, output = chronik(*untouched, "--expect-seal", f"3:{newest.seal_hash}")
    assert code == 0 and "OK: 12 events in 2 streams; 3 seal(s) verified" in output, output
    tamper(store, "DELETE FROM seals WHERE seal_no = 3")
    code, output = chronik(*untouched)
    assert code == 0, output  # the signatures alone cannot tell
    code, output = chronik(*untouched, "--expect-seal", f"3:{newest.seal_hash}")
    assert code == 1, output
    assert (
        "TAMPERED: 1 problem(s); the first: expected-seal at seal #3: seal #3 is not in the seal table"
        in output
    )


def test_older_seals_are_signed_by_verify_through_the_cli(store: EventStore, keys: tuple[Path, Path]) -> None:
    private, public = (str(path) for path in keys)
    assert chronik("seal", "--store", store.url, "--seal-size", "4")[0] == 0  # unsigned
    code, output = chronik("verify", "--store", store.url, "--verify-key", public)
    assert code == 1 and output.count("the seal is not signed") == 3, output
    store.append("acct-c", [NewEvent(type="Opened", data={})])
    code, output = chronik("seal", "--store", store.url)  # still unsigned: allowed, nothing is signed yet
    assert code == 0 and "seal #4" in output, output
    code, output = chronik("verify", "--store", store.url, "--signing-key", private)
    assert code == 0 and "signed 4 older seal(s) that had no signature" in output, output
    store.append("acct-c", [NewEvent(type="Closed", data={})])
    code, output = chronik("seal", "--store", store.url)
    # refused, not a wrong command line: exit 1 (docs/CLI.md)
    assert code == 1 and "the newest seal (#4) is signed" in output, output
    code, output = chronik("verify", "--store", store.url, "--verify-key", public)
    assert code == 0 and "the newest events were left unsealed" in output, output


def test_a_forged_seal_fails_verify_with_the_key_in_a_real_process(
    store: EventStore, keys: tuple[Path, Path]
) -> None:
    seal(store, max_events=4, signer=SealSigner.from_file(keys[0]))
    tamper(store, "DELETE FROM seals WHERE seal_no = 3")
    forge_last_event_of(store, "acct-b")
    forge_newest_seal(store)
    done = subprocess.run(
        [sys.executable, "-m", "chronik", "verify", "--store", store.url, "--verify-key", str(keys[1])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "signature at position" in done.stdout and "seal #3" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--expect-seal", "3"), "is not N:HASH"),
        (("--expect-seal", "0:" + "a" * 64), "is not N:HASH"),
        (("--expect-seal", "2:abc"), "is not N:HASH"),
        (("--verify-key", "no-such.pub"), "no verify key at 'no-such.pub'"),
        (("--signing-key", "no-such.pem"), "no signing key at 'no-such.pem'"),
    ],
)
def test_bad_audit_options_are_usage_errors(store: EventStore, args: tuple[str, ...], message: str) -> None:
    code, output = chronik("verify", "--store", store.url, *args)
    assert code == 2 and message in output and "Traceback" not in output, output


def test_unusable_key_files_are_refused(store: EventStore, keys: tuple[Path, Path], tmp_path: Path) -> None:
    os.chmod(keys[0], 0o644)
    code, output = chronik("seal", "--store", store.url, "--signing-key", str(keys[0]))
    assert code == 2 and "is readable by others (mode 0644): chmod 600 it" in output
    os.chmod(keys[0], 0o600)
    code, output = chronik("verify", "--store", store.url, "--verify-key", str(keys[0]))
    assert code == 2 and "is not a PEM public key" in output
    assert newest_seal(store) is None  # nothing was sealed by the refused commands
