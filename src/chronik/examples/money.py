"""How the example applications write an amount of money: `€1,234.56`, the same in every place.

Amounts are kept as whole cents (exact in JSON and in arithmetic); a person reads euros. The CLI's
demos, the bank's refusals (which reach the console as a transfer's reason) and the console itself
(`euros` in static/console.js) all write them this one way.
"""

from __future__ import annotations


def euros(cents: int | None) -> str:
    """`€1,234.56`, `-€5.00`; `-` for no amount."""
    if cents is None:
        return "-"
    sign = "-" if cents < 0 else ""
    return f"{sign}€{abs(cents) / 100:,.2f}"
