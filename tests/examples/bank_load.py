"""One load process of the bank's concurrency test: random transfers while running the process manager.

    python -m tests.examples.bank_load STORE_URL PREFIX ACCOUNTS SECONDS SEED LEASE_TTL

Initiates random transfers among the accounts PREFIX-0 .. PREFIX-{ACCOUNTS-1}, freezes and unfreezes
accounts now and then (so credits are refused and compensated), re-sends some commands (which must
be acknowledged, not repeated), and runs a member of the process manager's group in a thread the
whole time. Prints a JSON report of the transfers it initiated.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time

from chronik.errors import StoreUnavailable, WrongExpectedVersion
from chronik.examples.bank import Bank, transfer_manager
from chronik.store import open_store


def main(url: str, prefix: str, accounts: int, seconds: float, seed: int, lease_ttl: float) -> None:
    store = open_store(url)
    bank = Bank(store, actor=f"load-{seed}")
    member = transfer_manager(store, member_id=f"{prefix}-member-{seed}", lease_ttl=lease_ttl)
    runner = threading.Thread(target=member.run, name="transfer-manager")
    runner.start()
    rng = random.Random(seed)
    initiated: list[str] = []
    resent = freezes = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            roll = rng.random()
            account = f"{prefix}-{rng.randrange(accounts)}"
            try:
                if roll < 0.06:
                    bank.freeze(account, command_id=f"freeze-{seed}-{len(initiated)}-{freezes}")
                    freezes += 1
                elif roll < 0.14:
                    bank.unfreeze(account, command_id=f"unfreeze-{seed}-{len(initiated)}-{freezes}")
                elif roll < 0.20 and initiated:
                    previous = rng.choice(initiated)
                    transfer = bank.transfer_state(previous).state
                    result = bank.initiate_transfer(
                        previous, transfer.source, transfer.target, transfer.amount_cents
                    )
                    assert result.already_done, f"re-sent transfer {previous} was not acknowledged"
                    resent += 1
                else:
                    target = f"{prefix}-{rng.randrange(accounts)}"
                    if target == account:
                        continue
                    transfer_id = f"{prefix}-{seed}-{len(initiated)}"
                    bank.initiate_transfer(transfer_id, account, target, rng.randint(1, 4_000))
                    initiated.append(transfer_id)
            except (StoreUnavailable, WrongExpectedVersion):
                time.sleep(0.05)  # a busy database, or lost races on every retry: nothing written; go on
            time.sleep(rng.uniform(0, 0.01))
    finally:
        member.stop()
        runner.join()
        store.close()
    print(
        json.dumps(
            {"initiated": initiated, "resent": resent, "freezes": freezes, "stats": vars(member.stats)}
        )
    )


if __name__ == "__main__":
    url, prefix, accounts, seconds, seed, lease_ttl = sys.argv[1:7]
    main(url, prefix, int(accounts), float(seconds), int(seed), float(lease_ttl))
