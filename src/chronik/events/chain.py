"""The hash chain that makes the log tamper-evident.

Each event's hash covers its id, stream, version, type, schema version, times, metadata and
data *as stored* (the exact JSON text), and the hash of the previous event of the same stream.
Chaining per stream, not across the whole log, keeps writers of different streams independent:
the stream's own version order already serializes the writers that share a chain. Edits,
deletions and reordering across streams are caught by seals over ranges of global positions
(see `chronik.audit.seals`), which fold these hashes in global order.
"""

from __future__ import annotations

import hashlib
from typing import Final

GENESIS: Final = ""  # the "previous hash" of a stream's first event


def event_hash(
    previous_hash: str,
    event_id: str,
    stream: str,
    stream_version: int,
    event_type: str,
    schema_version: int,
    recorded_at: str,
    occurred_at: str,
    json_metadata: str,
    json_data: str,
) -> str:
    """SHA-256 (hex) of the fields joined by a separator no stream name or event type may contain.

    Every variable-length field is either validated to contain no newline (names, types, times)
    or placed last-but-one/last with its length prefixed (metadata, data), so no two different
    events share an input.
    """
    material = (
        f"{previous_hash}\n{event_id}\n{stream}\n{stream_version}\n{event_type}\n{schema_version}\n"
        f"{recorded_at}\n{occurred_at}\n{len(json_metadata)}\n{json_metadata}\n{json_data}"
    )
    return hashlib.sha256(material.encode()).hexdigest()
