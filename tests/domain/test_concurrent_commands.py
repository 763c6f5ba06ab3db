"""Real threads racing `execute` on one aggregate: every command lands once, none is lost."""

from __future__ import annotations

import threading

from chronik.domain import Repository
from chronik.errors import WrongExpectedVersion
from tests.conftest import StoreFactory
from tests.domain.accounts import Account

WRITERS = 4
DEPOSITS_EACH = 5


def test_racing_writers_all_succeed_through_retries_and_lose_no_update(store_factory: StoreFactory) -> None:
    store = store_factory()
    Repository(store).execute(Account, "shared", lambda account: account.open("ann"), create=True)
    all_loaded = threading.Barrier(WRITERS, timeout=30)
    conflicts: list[WrongExpectedVersion] = []
    failures: list[BaseException] = []

    def record_conflict(error: WrongExpectedVersion, attempt: int) -> None:
        conflicts.append(error)

    def writer(number: int) -> None:
        repository = Repository(store)
        first_attempt = True

        def deposit(account: Account) -> None:
            nonlocal first_attempt
            if first_attempt:  # everybody decides on the same version before anybody saves
                first_attempt = False
                all_loaded.wait()
            account.deposit(number)

        try:
            for _ in range(DEPOSITS_EACH):
                repository.execute(
                    Account,
                    "shared",
                    deposit,
                    attempts=100,
                    on_conflict=lambda error, _: conflicts.append(error),
                )
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(1, WRITERS + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    account = Repository(store).load(Account, "shared", use_snapshots=False)
    assert account.version == WRITERS * DEPOSITS_EACH
    assert sorted(account.state.movements) == sorted(
        number for number in range(1, WRITERS + 1) for _ in range(DEPOSITS_EACH)
    )
    assert len(conflicts) >= WRITERS - 1  # the barrier made all but one of the first saves stale
