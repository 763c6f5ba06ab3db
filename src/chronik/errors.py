"""The errors chronik raises, one class per thing that can go wrong.

Every error carries the facts needed to understand it as attributes (not only in its message),
so a caller can react without parsing text: a `WrongExpectedVersion` knows the stream and both
versions, an `EventTooLarge` knows the size and the limit. Errors about the caller's input are
raised before anything is written.
"""

from __future__ import annotations


class ChronikError(Exception):
    """Base class of every error chronik raises on purpose."""


class InvalidInput(ChronikError, ValueError):
    """The caller passed something chronik cannot accept; nothing was written."""


class InvalidStreamName(InvalidInput):
    def __init__(self, stream: object, reason: str) -> None:
        self.stream = stream
        self.reason = reason
        super().__init__(f"invalid stream name {stream!r}: {reason}")


class InvalidEventType(InvalidInput):
    def __init__(self, event_type: object, reason: str) -> None:
        self.event_type = event_type
        self.reason = reason
        super().__init__(f"invalid event type {event_type!r}: {reason}")


class InvalidExpectedVersion(InvalidInput):
    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(
            f"invalid expected version {value!r}: use ANY, NO_STREAM, STREAM_EXISTS "
            "or the version (>= 0) of the stream's last event"
        )


class TimeOutOfRange(InvalidInput):
    """A time on a date chronik does not take (see `chronik.events.envelope.check_time`)."""

    def __init__(self, field: str, value: object, earliest: str, latest: str) -> None:
        self.field = field
        self.value = value
        self.earliest = earliest
        self.latest = latest
        shown = value.isoformat() if hasattr(value, "isoformat") else repr(value)
        super().__init__(
            f"{field} {shown} is out of range: times must fall on a date from {earliest} to {latest} "
            "(as written, in any UTC offset)"
        )


class EventDataNotSerializable(InvalidInput):
    """Data or metadata that cannot be stored as a JSON object, without loss."""

    def __init__(self, event_type: str, field: str, reason: str) -> None:
        self.event_type = event_type
        self.field = field
        self.reason = reason
        super().__init__(f"{field} of event {event_type!r} is not storable as JSON: {reason}")


class EventTooLarge(InvalidInput):
    def __init__(self, event_type: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.size = size
        self.limit = limit
        super().__init__(f"event {event_type!r} is {size} bytes of JSON, over the limit of {limit} bytes")


class WrongExpectedVersion(ChronikError):
    """The stream was not at the version the writer expected: somebody else wrote first.

    `expected` is what the writer asked for (an int, or one of the `StreamState` values);
    `actual` is the stream's version when the append was tried (None when it does not exist).
    Re-read the stream, decide again, and retry.
    """

    def __init__(self, stream: str, expected: object, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown_actual = "no stream" if actual is None else f"version {actual}"
        shown_expected = expected if isinstance(expected, int) else getattr(expected, "value", expected)
        super().__init__(
            f"wrong expected version for stream {stream!r}: expected {shown_expected}, found {shown_actual}"
        )


class StreamNotFound(ChronikError, LookupError):
    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"stream {stream!r} not found")


class DuplicateEventId(ChronikError):
    """An event id that is already recorded somewhere other than where this append would put it.

    Re-sending the same ids to the same place is an acknowledged retry, not this error.
    """

    def __init__(self, event_id: object, stream: str, recorded_in: str, recorded_version: int) -> None:
        self.event_id = event_id
        self.stream = stream
        self.recorded_in = recorded_in
        self.recorded_version = recorded_version
        super().__init__(
            f"event id {event_id} is already recorded in stream {recorded_in!r} at version "
            f"{recorded_version}; it cannot be appended to {stream!r} at another place"
        )


class StoreUnavailable(ChronikError):
    """The store could not be reached or lost its connection.

    `retryable` is True when trying again later can succeed. When an append raises this, its
    outcome may be unknown: retry it with the same event ids, and the store acknowledges it
    without writing it twice.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


class SchemaTooNew(ChronikError):
    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"the store's schema is version {found}, but this chronik understands up to {supported}: "
            "upgrade chronik"
        )


class UnsupportedStoreURL(InvalidInput):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"cannot open store {url!r}: {reason}")


class TransactionAborted(ChronikError):
    """A unit of work whose earlier step failed may only be rolled back, never committed."""


class WriteOrderConflict(ChronikError):
    """A unit of work could not append to a stream without breaking its order in the global log.

    Within one stream, global order equals version order. On PostgreSQL a unit of work takes its
    place in the global order at its first write; if a writer that took its place later has since
    appended to another stream this unit of work then appends to, its events cannot go after
    them. Nothing was written (the unit of work is rolled back): run it again. Declaring the
    streams first (`uow.lock_streams([...])`, as `append_many` does) avoids it.
    """

    retryable = True

    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(
            f"stream {stream!r} was appended to by a unit of work that began after this one; appending "
            "after it would break the stream's global order: nothing was written, retry the unit of work"
        )


class EventDecodingError(ChronikError):
    """A recorded event could not be turned back into its typed class; the event itself is untouched."""


class UnknownEventType(EventDecodingError, LookupError):
    """No class is registered for a stored event type, and no upcaster renames it to one."""

    def __init__(self, event_type: str, schema_version: int) -> None:
        self.event_type = event_type
        self.schema_version = schema_version
        super().__init__(
            f"unknown event type {event_type!r} (schema version {schema_version}): register its class "
            "with the codec, or an upcaster that renames it"
        )


class MissingUpcaster(EventDecodingError, LookupError):
    """The upcaster chain from a stored schema version to the class's current one has a gap."""

    def __init__(self, event_type: str, from_version: int, target_version: int) -> None:
        self.event_type = event_type
        self.from_version = from_version
        self.target_version = target_version
        super().__init__(
            f"no upcaster for event type {event_type!r} from schema version {from_version} "
            f"(the class is at version {target_version}): register one for ({event_type!r}, {from_version})"
        )


class EventSchemaTooNew(EventDecodingError):
    """A stored event was written by newer code than this process runs."""

    def __init__(self, event_type: str, stored_version: int, known_version: int) -> None:
        self.event_type = event_type
        self.stored_version = stored_version
        self.known_version = known_version
        super().__init__(
            f"event type {event_type!r} is stored at schema version {stored_version}, but this code knows "
            f"only up to version {known_version}: upgrade the code that reads it"
        )


class EventDataInvalid(EventDecodingError):
    """A stored event's data does not fit its class (a wrong type, a missing field without default)."""

    def __init__(self, event_type: str, schema_version: int, reason: str) -> None:
        self.event_type = event_type
        self.schema_version = schema_version
        self.reason = reason
        super().__init__(f"event {event_type!r} (schema version {schema_version}) does not decode: {reason}")


class DomainError(ChronikError):
    """A command was refused by the domain's rules; nothing was recorded. Subclass it per rule."""


class EventDoesNotFit(DomainError):
    """An event for a stream whose category an aggregate owns, which that aggregate could not apply:
    a type it has no applier for, or data that does not decode into the event's class."""

    def __init__(self, stream: str, aggregate: str, event_type: str, reason: str) -> None:
        self.stream = stream
        self.aggregate = aggregate
        self.event_type = event_type
        self.reason = reason
        super().__init__(
            f"event {event_type!r} does not fit stream {stream!r} (aggregate {aggregate}): {reason}"
        )


class AggregateNotFound(StreamNotFound):
    """No aggregate at that stream (or none yet at the requested point in time)."""

    def __init__(self, stream: str, reason: str = "has no events") -> None:
        super().__init__(stream)
        self.reason = reason
        self.args = (f"aggregate stream {stream!r} {reason}",)


class VersionNotFound(AggregateNotFound):
    """Time travel to a version past the stream's end: said, rather than answered with the last version."""

    def __init__(self, stream: str, version: int, last_version: int) -> None:
        super().__init__(stream, f"has no version {version}: its last version is {last_version}")
        self.version = version
        self.last_version = last_version


class UnknownAggregateType(ChronikError, LookupError):
    """No aggregate class is registered for a stream's category."""

    def __init__(self, category: str, known: tuple[str, ...]) -> None:
        self.category = category
        self.known = known
        shown = ", ".join(known) if known else "none"
        super().__init__(f"no aggregate type is registered for category {category!r} (registered: {shown})")


class HistoricalAggregate(ChronikError):
    """An aggregate loaded as of a past point is a read-only view; saving it would rewrite the past."""
