"""The key ring on every backend: the same behaviour wherever the keys are kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chronik.server.keys import KeyRingError, keyring_for, split_token
from chronik.store import EventStore

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def test_keys_are_created_verified_listed_and_revoked(store: EventStore) -> None:
    ring = keyring_for(store)
    assert keyring_for(store) is ring  # one ring per store object
    assert not ring.has_active_keys()
    key, token = ring.create("ingest", ["append", "read"], ["cart-"], now=NOW)
    assert ring.has_active_keys()
    found = ring.verify(token)
    assert found is not None and found.key_id == key.key_id
    assert found.scopes == ("append", "read") and found.stream_prefixes == ("cart-",)
    assert found.allows_stream("cart-1") and not found.allows_stream("bank-1")
    assert ring.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert [k.key_id for k in ring.list()] == [key.key_id]
    assert ring.revoke(key.key_id, now=NOW) and not ring.revoke(key.key_id, now=NOW)
    assert ring.verify(token) is None
    assert not ring.has_active_keys()
    listed = ring.list()
    assert listed[0].revoked_at == NOW


@pytest.mark.sql_stores
def test_only_a_hash_of_the_secret_is_stored(store: EventStore) -> None:
    ring = keyring_for(store)
    _, token = ring.create("reader", ["read"], now=NOW)
    _, secret = split_token(token) or ("", "")
    rows = ring._query("SELECT * FROM api_keys", ())  # type: ignore[attr-defined]
    assert rows and secret not in repr(rows)


def test_once_a_key_was_created_keys_stay_required_until_access_is_opened(store: EventStore) -> None:
    ring = keyring_for(store)
    assert not ring.requires_keys()  # no key ever: a loopback server is open
    key, _ = ring.create("admin", ["admin"], now=NOW)
    assert ring.requires_keys()
    with pytest.raises(KeyRingError, match=rf"active \({key.key_id}\): revoke them first"):
        ring.open_access(now=NOW)
    ring.revoke(key.key_id, now=NOW)
    assert ring.requires_keys()  # revoking the last key never opens access
    ring.open_access(now=NOW + timedelta(seconds=1))
    assert not ring.requires_keys()
    later, _ = ring.create("reader", ["read"], now=NOW + timedelta(seconds=2))
    assert ring.requires_keys()  # a key created after the opening closes access again
    ring.revoke(later.key_id, now=NOW + timedelta(seconds=3))
    assert ring.requires_keys()
    ring.open_access(now=NOW + timedelta(seconds=4))  # an opening again replaces the first
    assert not ring.requires_keys()
