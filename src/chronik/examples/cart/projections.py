"""Read models of the cart example: carts by status, and the product price list.

Written against the raw event types and JSON data, so they do not depend on the cart aggregate's
classes. The data shapes they read (every field optional unless marked; unknown fields ignored,
wrongly typed values treated as missing):

    stream cart-<id>:
      ItemAdded      {sku (required), quantity = 1, unit_price_cents?}
      ItemRemoved    {sku (required), quantity?  (missing: remove the line)}
      CheckedOut     {total_cents?, prices?: {sku: cents}}   (total: given, else computed from lines)
    stream product-<id>:
      ProductUpdated {sku = <id>, name?, price_cents?}       (missing fields keep their old value)

Every value written comes from the events (times from `recorded_at`, never the clock), so a
rebuild produces the same rows and reconciliation can compare them.
"""

from __future__ import annotations

from typing import Any

from chronik.events.envelope import RecordedEvent
from chronik.projections import Projection, ProjectionTx, handles, register_projection


def _int(value: Any) -> int | None:
    """An integer from JSON, or None: booleans, floats with fractions and text are not amounts."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _entity_id(stream: str) -> str:
    return stream.partition("-")[2] or stream


@register_projection
class CartsByStatus(Projection):
    """Each cart's status, item count and total; its lines in `cart_items`."""

    name = "carts_by_status"
    version = 1
    tables = ("carts", "cart_items")
    schema = (
        """CREATE TABLE {carts} (
            cart_id     TEXT    PRIMARY KEY,
            status      TEXT    NOT NULL,   -- open | checked_out
            items       INTEGER NOT NULL,   -- total quantity over the lines
            total_cents INTEGER,            -- set at checkout (NULL when no price was known)
            updated_at  TEXT    NOT NULL    -- recorded_at of the last event applied
        )""",
        "CREATE INDEX {carts}_status ON {carts} (status)",
        """CREATE TABLE {cart_items} (
            cart_id          TEXT    NOT NULL,
            sku              TEXT    NOT NULL,
            quantity         INTEGER NOT NULL,
            unit_price_cents INTEGER,
            PRIMARY KEY (cart_id, sku)
        )""",
    )

    def _touch(self, tx: ProjectionTx, cart_id: str, event: RecordedEvent) -> None:
        tx.execute(
            "INSERT INTO {carts} (cart_id, status, items, updated_at) VALUES (?, 'open', 0, ?) "
            "ON CONFLICT (cart_id) DO UPDATE SET updated_at = excluded.updated_at",
            (cart_id, event.recorded_at.isoformat()),
        )

    def _recount(self, tx: ProjectionTx, cart_id: str) -> None:
        tx.execute(
            "UPDATE {carts} SET items = (SELECT coalesce(sum(quantity), 0) FROM {cart_items} "
            "WHERE cart_id = ?) WHERE cart_id = ?",
            (cart_id, cart_id),
        )

    @handles("ItemAdded")
    def item_added(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        data, cart_id = event.data, _entity_id(event.stream)
        sku = _text(data.get("sku"))
        self._touch(tx, cart_id, event)
        if sku is None:
            return
        quantity = _int(data.get("quantity", data.get("qty", 1)))
        tx.execute(
            "INSERT INTO {cart_items} (cart_id, sku, quantity, unit_price_cents) VALUES (?, ?, ?, ?) "
            # The existing row's columns are qualified: PostgreSQL finds bare names ambiguous (excluded).
            "ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = {cart_items}.quantity + excluded.quantity, "
            "unit_price_cents = coalesce(excluded.unit_price_cents, {cart_items}.unit_price_cents)",
            (cart_id, sku, 1 if quantity is None else quantity, _int(data.get("unit_price_cents"))),
        )
        self._recount(tx, cart_id)

    @handles("ItemRemoved")
    def item_removed(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        data, cart_id = event.data, _entity_id(event.stream)
        sku = _text(data.get("sku"))
        self._touch(tx, cart_id, event)
        if sku is None:
            return
        quantity = _int(data.get("quantity", data.get("qty")))
        if quantity is None:
            tx.execute("DELETE FROM {cart_items} WHERE cart_id = ? AND sku = ?", (cart_id, sku))
        else:
            tx.execute(
                "UPDATE {cart_items} SET quantity = quantity - ? WHERE cart_id = ? AND sku = ?",
                (quantity, cart_id, sku),
            )
            tx.execute(
                "DELETE FROM {cart_items} WHERE cart_id = ? AND sku = ? AND quantity <= 0", (cart_id, sku)
            )
        self._recount(tx, cart_id)

    @handles("CheckedOut")
    def checked_out(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        data, cart_id = event.data, _entity_id(event.stream)
        self._touch(tx, cart_id, event)
        prices = data.get("prices")
        if isinstance(prices, dict):
            for sku, cents in prices.items():
                if _int(cents) is not None:
                    tx.execute(
                        "UPDATE {cart_items} SET unit_price_cents = ? WHERE cart_id = ? AND sku = ?",
                        (_int(cents), cart_id, str(sku)),
                    )
        total = _int(data.get("total_cents"))
        if total is None:
            row = tx.query(
                "SELECT sum(quantity * unit_price_cents) FROM {cart_items} "
                "WHERE cart_id = ? AND unit_price_cents IS NOT NULL",
                (cart_id,),
            )
            total = row[0][0] if row else None
        tx.execute(
            "UPDATE {carts} SET status = 'checked_out', total_cents = ? WHERE cart_id = ?", (total, cart_id)
        )

    def count_by_status(self) -> dict[str, int]:
        return dict(self.query("SELECT status, count(*) FROM {carts} GROUP BY status ORDER BY status"))


@register_projection
class ProductPrices(Projection):
    """The current name and price of every product."""

    name = "product_prices"
    version = 1
    tables = ("products",)
    schema = (
        """CREATE TABLE {products} (
            sku         TEXT PRIMARY KEY,
            name        TEXT,
            price_cents INTEGER,
            updated_at  TEXT NOT NULL
        )""",
    )

    @handles("ProductUpdated")
    def product_updated(self, tx: ProjectionTx, event: RecordedEvent) -> None:
        data = event.data
        sku = _text(data.get("sku")) or _entity_id(event.stream)
        tx.execute(
            "INSERT INTO {products} (sku, name, price_cents, updated_at) VALUES (?, ?, ?, ?) "
            # The existing row's columns are qualified: PostgreSQL finds bare names ambiguous (excluded).
            "ON CONFLICT (sku) DO UPDATE SET name = coalesce(excluded.name, {products}.name), "
            "price_cents = coalesce(excluded.price_cents, {products}.price_cents), "
            "updated_at = excluded.updated_at",
            (sku, _text(data.get("name")), _int(data.get("price_cents")), event.recorded_at.isoformat()),
        )

    def price_list(self) -> list[tuple[str, str | None, int | None]]:
        return [
            (row[0], row[1], row[2])
            for row in self.query("SELECT sku, name, price_cents FROM {products} ORDER BY sku")
        ]
