"""Which partition a stream belongs to: a stable hash, the same in every process and on every machine.

Python's `hash()` of a str is randomized per process (PYTHONHASHSEED), so two workers would disagree
about where a stream goes and could handle one stream's events at the same time, out of order.
blake2b is stable, fast and spreads names evenly; the first 8 bytes, read as an unsigned integer,
modulo the partition count, give the partition. Like Message DB we hash the stream's whole name,
so `cart-1` and `cart-2` may land in different partitions while `cart-1` always lands in one.
"""

from __future__ import annotations

import functools
import hashlib


@functools.lru_cache(maxsize=65536)
def stream_hash(stream: str) -> int:
    """A 64-bit hash of the stream name that never changes between processes or releases."""
    return int.from_bytes(hashlib.blake2b(stream.encode("utf-8"), digest_size=8).digest(), "big")


def partition_of(stream: str, partitions: int) -> int:
    """The partition (0 .. partitions-1) that owns every event of `stream`."""
    if partitions < 1:
        raise ValueError("a group needs at least one partition")
    return stream_hash(stream) % partitions
