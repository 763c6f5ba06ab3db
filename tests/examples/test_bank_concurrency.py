"""Eight real processes make random transfers among twenty accounts for a few seconds, each also
running a member of the transfer process manager's group; one is SIGKILLed half-way. Afterwards:
no account was ever below its overdraft limit, no money was created or lost, every transfer in
the log completed, was rejected or was compensated, and every completed transfer moved its money
exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from chronik.examples.bank import Bank, queries
from chronik.store import open_store

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 8
ACCOUNTS = 20
SECONDS = 4.0
LEASE_TTL = 4.0  # the killed member's partitions wait this long for a new owner


@pytest.mark.chaos
@pytest.mark.slow
def test_random_transfers_from_eight_processes_keep_the_books(process_store_url: str, tmp_path: Path) -> None:
    url = process_store_url
    prefix = f"acct{uuid.uuid4().hex[:6]}"
    store = open_store(url)
    bank = Bank(store)
    for index in range(ACCOUNTS):
        account = f"{prefix}-{index}"
        bank.open_account(
            account, f"owner {index}", command_id="open", overdraft_limit_cents=2_000 * (index % 3 == 0)
        )
        bank.deposit(account, 10_000, command_id="initial")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.examples.bank_load",
                url,
                prefix,
                str(ACCOUNTS),
                str(SECONDS),
                str(seed),
                str(LEASE_TTL),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(PROCESSES)
    ]
    time.sleep(SECONDS / 2)
    killed = workers[-1]
    killed.kill()  # SIGKILL mid-run: its process manager member dies holding leases, mid-batch
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    reports = []
    for worker in workers[:-1]:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    reported = {transfer for report in reports for transfer in report["initiated"]}
    initiated = {
        event.stream.partition("-")[2]
        for event in store.iter_all(categories=["transfer"], event_types=["TransferInitiated"])
        if str(event.data["source"]).startswith(f"{prefix}-")
    }
    assert reported <= initiated and len(initiated) >= 8 * 10
    assert sum(report["resent"] for report in reports) > 0

    # Finish what the processes left in flight; the killed member's leases must run out first.
    deadline = time.monotonic() + 60
    while True:
        bank.process_transfers()
        check = queries.check_ledger(store, prefix=prefix)
        if not check.unfinished_transfers:
            break
        assert time.monotonic() < deadline, check.unfinished_transfers[:5]
        time.sleep(0.5)

    assert check.overdrawn == ()
    assert check.in_transit_cents == 0
    assert check.balanced and check.total_balance_cents == ACCOUNTS * 10_000 == check.deposits_cents
    statuses = Counter(bank.transfer_state(transfer).state.status for transfer in initiated)
    assert set(statuses) <= {"completed", "rejected", "compensated"}, statuses
    print(f"transfers by outcome: {dict(statuses)}; books: {check}")
    assert statuses["completed"] > 0 and statuses["rejected"] + statuses["compensated"] > 0, statuses

    moves: dict[str, Counter[str]] = defaultdict(Counter)
    for event in store.iter_all(categories=["account"]):
        if event.stream.startswith(f"account-{prefix}-") and "transfer_id" in event.data:
            moves[event.data["transfer_id"]][event.type] += 1
    for transfer in initiated:
        status = bank.transfer_state(transfer).state.status
        expected = {
            "completed": {"TransferDebited": 1, "TransferCredited": 1},
            "compensated": {"TransferDebited": 1, "TransferRefunded": 1},
            "rejected": {},
        }[status]
        assert dict(moves.get(transfer, {})) == expected, (transfer, status, moves.get(transfer))
    store.close()
