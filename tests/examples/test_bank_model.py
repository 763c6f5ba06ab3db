"""The bank against a plain-Python model, on random command sequences (hypothesis): every balance,
status and transfer outcome agrees with the model, re-sent commands change nothing, a used command
id sent with another command is refused, and the books balance after every sequence."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chronik.examples.bank import AccountNotOpen, Bank, CommandIdReused, InsufficientFunds, queries
from chronik.store import open_store

ACCOUNTS = ("a", "b", "c")
MONEY = ("deposit", "withdraw")
account = st.sampled_from(ACCOUNTS)
amount = st.integers(min_value=1, max_value=5_000)
operation = st.one_of(
    st.tuples(st.just("deposit"), account, amount),
    st.tuples(st.just("withdraw"), account, amount),
    st.tuples(st.just("transfer"), account, account, amount),
    st.tuples(st.just("freeze"), account),
    st.tuples(st.just("unfreeze"), account),
    st.tuples(st.just("limit"), account, st.integers(min_value=0, max_value=3_000)),
    # a used command id again: the same command (a re-send), or another kind or amount under it
    st.tuples(st.just("reuse"), st.integers(min_value=0, max_value=50), st.sampled_from(MONEY), amount),
    # right at the edge: everything the account may spend, give or take one cent
    st.tuples(st.just("drain"), account, st.integers(min_value=-1, max_value=1)),
    st.tuples(st.just("drain-transfer"), account, account, st.integers(min_value=-1, max_value=1)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(operation, max_size=25))
def test_random_command_sequences_agree_with_a_model(operations: list[tuple[Any, ...]]) -> None:
    store = open_store("memory://")
    bank = Bank(store)
    balance = dict.fromkeys(ACCOUNTS, 1_000)
    limit = dict.fromkeys(ACCOUNTS, 0)
    status = dict.fromkeys(ACCOUNTS, "open")
    for name in ACCOUNTS:
        bank.open_account(name, name.upper(), command_id="open")
        bank.deposit(name, 1_000, command_id="initial")
    sent: list[tuple[str, str, tuple[Any, ...]]] = []  # (kind, command id, args) of recorded commands
    for index, (kind, *args) in enumerate(operations):
        command_id = f"cmd-{index}"
        if kind in ("drain", "drain-transfer"):
            spendable = balance[args[0]] + limit[args[0]] + args[-1]
            if spendable < 1:
                continue
            kind, args = (
                kind.removeprefix("drain-") if kind != "drain" else "withdraw",
                [*args[:-1], spendable],
            )
        if kind == "deposit":
            name, cents = args
            if status[name] == "open":
                bank.deposit(name, cents, command_id=command_id)
                balance[name] += cents
                sent.append((kind, command_id, (name, cents)))
            else:
                _refused(AccountNotOpen, bank.deposit, name, cents, command_id=command_id)
        elif kind == "withdraw":
            name, cents = args
            if status[name] != "open":
                _refused(AccountNotOpen, bank.withdraw, name, cents, command_id=command_id)
            elif balance[name] - cents < -limit[name]:
                _refused(InsufficientFunds, bank.withdraw, name, cents, command_id=command_id)
            else:
                bank.withdraw(name, cents, command_id=command_id)
                balance[name] -= cents
                sent.append((kind, command_id, (name, cents)))
        elif kind == "transfer":
            source, target, cents = args
            if source == target:
                continue
            outcome = bank.transfer(command_id, source, target, cents).state.status
            sent.append((kind, command_id, (source, target, cents)))
            if status[source] != "open" or balance[source] - cents < -limit[source]:
                assert outcome == "rejected"
            elif status[target] != "open":
                assert outcome == "compensated"
            else:
                assert outcome == "completed"
                balance[source] -= cents
                balance[target] += cents
        elif kind in ("freeze", "unfreeze"):
            (name,) = args
            getattr(bank, kind)(name, command_id=command_id)
            status[name] = "frozen" if kind == "freeze" else "open"
        elif kind == "limit":
            name, cents = args
            if status[name] == "open":
                bank.set_overdraft_limit(name, cents, command_id=command_id)
                limit[name] = cents
        elif kind == "reuse" and sent:
            old_kind, old_id, old_args = sent[args[0] % len(sent)]
            if old_kind == "transfer":
                new_kind, new_args = old_kind, (*old_args[:2], args[2])
                run: Any = lambda *fields, command_id: bank.initiate_transfer(command_id, *fields)  # noqa: E731
            else:
                new_kind, new_args = args[1], (old_args[0], args[2])
                run = getattr(bank, new_kind)
            if (new_kind, new_args) == (old_kind, old_args):
                assert run(*new_args, command_id=old_id).already_done
            else:
                _refused(CommandIdReused, run, *new_args, command_id=old_id)
        for name in ACCOUNTS:
            state = bank.account(name).state
            assert (state.balance_cents, state.status) == (balance[name], status[name])
    check = queries.check_ledger(store)
    assert check.ok and check.in_transit_cents == 0 and check.unfinished_transfers == ()
    assert check.total_balance_cents == sum(balance.values())


def _refused(error: type[Exception], command: Any, *args: Any, **kwargs: Any) -> None:
    try:
        command(*args, **kwargs)
    except error:
        return
    raise AssertionError(f"{command.__name__}{args} was accepted; the model refuses it ({error.__name__})")


def test_a_lowered_limit_then_a_deposit_is_no_overdraft() -> None:
    """Found by the model test: the limit lowered below the debt, then a deposit, was flagged overdrawn."""
    with open_store("memory://") as store:
        bank = Bank(store)
        bank.open_account("a", "A", command_id="open", overdraft_limit_cents=1_000)
        bank.withdraw("a", 1_000, command_id="w")
        bank.set_overdraft_limit("a", 0, command_id="lower")
        bank.deposit("a", 1, command_id="d")
        check = queries.check_ledger(store)
        assert check.overdrawn == () and check.ok
