"""PostgreSQL batches travel as one JSON array (`SQL_INSERT_MANY`) and reads page through a
prepared statement (`SQL_READ_ALL`): the text of every event must arrive byte for byte (the hash
chain covers it), and paging must give the log exactly once, in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from chronik import NO_STREAM, NewEvent
from chronik.audit.seals import verify
from chronik.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

AWKWARD = [
    "it's",  # a quote, as SQL literals quote
    'say "hi"',
    "back\\slash \\n \\u0000 not escapes",
    "%s %(name)s {} $1",  # placeholders of psycopg, str.format and PostgreSQL
    "é ß 中文 🎉 \u2028 \u2029",
    "\t\r\n\x01\x1f",
    "x" * 100_000,
]


def test_a_batch_keeps_every_text_byte_for_byte_and_its_chain_verifies(store: PostgresStore) -> None:
    occurred = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    events = [
        NewEvent(
            type="Noted",
            data={"text": text, "n": index},
            metadata={"note": text, "correlation_id": "c-1"},
            event_id=uuid.uuid4(),
            occurred_at=occurred if index % 2 else None,
        )
        for index, text in enumerate(AWKWARD)
    ]
    encoded = store.encode_batch(events)
    result = store.append("notes-1", events, NO_STREAM)

    read = store.read_stream("notes-1")
    assert [e.json_data for e in read] == [e.json_data for e in encoded]
    assert [e.json_metadata for e in read] == [e.json_metadata for e in encoded]
    assert [e.data["text"] for e in read] == AWKWARD
    assert [e.event_id for e in read] == [e.event_id for e in encoded]
    assert [e.global_position for e in read] == list(result.global_positions)
    assert [e.occurred_at == occurred for e in read] == [bool(i % 2) for i in range(len(AWKWARD))]
    assert all(e.occurred_at == e.recorded_at for e in read[::2])
    assert store.read_stream_payloads("notes-1", from_version=2) == [
        (e.stream_version, e.type, e.schema_version, e.json_data) for e in read[2:]
    ]
    assert verify(store, seal_after=False).ok


def test_pages_of_the_log_give_every_event_once_in_order(store: PostgresStore) -> None:
    for stream in range(7):
        store.append(f"page-{stream}", [NewEvent(type="T", data={"i": i}) for i in range(30)])
    everything = store.read_all()
    assert len(everything) == 210
    positions = [e.global_position for e in everything]
    assert positions == sorted(set(positions))
    paged = []
    position = 0
    while page := store.read_all(position, limit=17):
        paged.extend(page)
        position = page[-1].global_position + 1
    assert paged == everything
    assert list(store.iter_all(batch_size=13)) == everything
    middle = positions[100]
    assert store.read_all(positions[50], to_position=middle) == everything[50:101]
    filtered = store.read_all(categories=["page"], event_types=["T"], limit=40)
    assert filtered == everything[:40]
