"""Typed events and schema evolution: plain classes in, stored JSON out, and back again.

Users write events as msgspec `Struct`s or dataclasses. The codec maps each class to an event
type name (the class name, unless the class sets `event_type`) and a schema version (the class's
`schema_version`, default 1), both as plain class attributes, not fields:

    class ItemAdded(msgspec.Struct):
        schema_version = 2
        sku: str
        quantity: int = 1

Reading is tolerant: unknown fields are ignored and missing fields with defaults take them, so
adding an optional field needs no version bump. Anything else (a rename, a changed meaning) bumps
`schema_version` and registers an upcaster that lifts the old JSON object one version up.
Upcasters run on read only: stored events are never rewritten.

Decoding is the hot path of hydration. An event at its class's current version goes straight from
the stored JSON text into the class through a cached `msgspec.json.Decoder`, with no dict in
between; only old versions take the dict -> upcasters -> `msgspec.convert` path.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec

from chronik.errors import (
    EventDataInvalid,
    EventSchemaTooNew,
    InvalidInput,
    MissingUpcaster,
    UnknownEventType,
)
from chronik.events.envelope import NewEvent, RecordedEvent, check_event_type

EventT = TypeVar("EventT", bound=type)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Lifts one stored event's data from schema version n to n + 1. Must not touch anything outside it."""

JsonDecoder = Callable[[str], Any]
"""Turns an event's stored JSON text into an instance of its class."""

_decode_dict: Final = msgspec.json.Decoder(dict[str, Any]).decode

DECODING_ERRORS: Final = (msgspec.ValidationError, msgspec.DecodeError)
"""What a decoder from `EventCodec.decoder_for` raises on data that does not fit its class."""


class _Step(msgspec.Struct, frozen=True):
    upcast: Upcaster
    renamed_to: str | None


class EventCodec:
    """A registry of event classes, their type names, schema versions and upcasters.

    One codec is typically shared by an application; it is safe to read from several threads once
    the classes are registered (registration itself is meant for start-up).
    """

    def __init__(self) -> None:
        self._class_by_type: dict[str, type] = {}
        self._type_by_class: dict[type, str] = {}
        self._steps: dict[tuple[str, int], _Step] = {}
        self._decoders: dict[tuple[str, int], tuple[type, JsonDecoder]] = {}

    # -- registration ------------------------------------------------------------------------

    def register(self, cls: EventT, *, name: str | None = None) -> EventT:
        """Register an event class (usable as a decorator). Registering it again is a no-op."""
        if not (isinstance(cls, type) and (issubclass(cls, msgspec.Struct) or dataclasses.is_dataclass(cls))):
            raise InvalidInput(f"an event class must be a msgspec Struct or a dataclass, not {cls!r}")
        for attribute in ("event_type", "schema_version"):
            if attribute in _field_names(cls):
                raise InvalidInput(
                    f"{cls.__name__}.{attribute} is a field; it must be a plain class attribute "
                    "(the codec reads it from the class, it is not part of the event's data)"
                )
        type_name = check_event_type(name or getattr(cls, "event_type", None) or cls.__name__)
        schema_version_of(cls)  # refuse a bad version now, not at the first write
        known = self._class_by_type.get(type_name)
        if known is cls:
            return cls
        if known is not None:
            raise InvalidInput(f"event type {type_name!r} is already registered for {known!r}")
        if cls in self._type_by_class:
            raise InvalidInput(f"{cls!r} is already registered as {self._type_by_class[cls]!r}")
        self._class_by_type[type_name] = cls
        self._type_by_class[cls] = type_name
        self._decoders.clear()  # a registration can complete a chain that failed before
        return cls

    def is_registered(self, cls: type) -> bool:
        return cls in self._type_by_class

    def add_upcaster(
        self, event_type: str, from_version: int, upcast: Upcaster, *, renamed_to: str | None = None
    ) -> None:
        """Lift `event_type` data at `from_version` to `from_version + 1` (and optionally rename it)."""
        check_event_type(event_type)
        if renamed_to is not None:
            check_event_type(renamed_to)
        if not isinstance(from_version, int) or from_version < 1:
            raise InvalidInput(f"from_version must be an integer >= 1, not {from_version!r}")
        key = (event_type, from_version)
        if key in self._steps:
            raise InvalidInput(f"an upcaster for ({event_type!r}, {from_version}) is already registered")
        self._steps[key] = _Step(upcast, renamed_to)
        self._decoders.clear()

    def upcaster(
        self, event_type: str, from_version: int, *, renamed_to: str | None = None
    ) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of `add_upcaster`."""

        def decorate(upcast: Upcaster) -> Upcaster:
            self.add_upcaster(event_type, from_version, upcast, renamed_to=renamed_to)
            return upcast

        return decorate

    # -- writing -----------------------------------------------------------------------------

    def type_name(self, cls: type) -> str:
        try:
            return self._type_by_class[cls]
        except KeyError:
            raise InvalidInput(f"{cls.__name__} is not a registered event class") from None

    def to_new_event(
        self,
        event: object,
        *,
        metadata: Mapping[str, Any] | None = None,
        event_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> NewEvent:
        cls = type(event)
        return NewEvent(
            type=self.type_name(cls),
            data=event,
            metadata=metadata,
            event_id=event_id,
            schema_version=schema_version_of(cls),
            occurred_at=occurred_at,
        )

    # -- reading -----------------------------------------------------------------------------

    def decode(self, recorded: RecordedEvent) -> Any:
        """The recorded event as an instance of its (current) class, upcast if it is older."""
        _, decode = self.decoder_for(recorded.type, recorded.schema_version)
        try:
            return decode(recorded.json_data)
        except DECODING_ERRORS as error:
            raise EventDataInvalid(recorded.type, recorded.schema_version, str(error)) from None

    def decoder_for(self, event_type: str, schema_version: int) -> tuple[type, JsonDecoder]:
        """The class that a stored (type, version) becomes, and a function from its JSON text to it.

        Resolved once per (type, version) and cached, so a hydration loop pays for the upcaster
        lookup only on the first event of each kind. The function is msgspec's own decoder when no
        upcaster is involved, unwrapped so that a loop pays no extra call per event: it raises one
        of `DECODING_ERRORS`, which the caller turns into `EventDataInvalid` (as `decode` does).
        """
        key = (event_type, schema_version)
        found = self._decoders.get(key)
        if found is None:
            found = self._decoders[key] = self._resolve(event_type, schema_version)
        return found

    def _resolve(self, event_type: str, schema_version: int) -> tuple[type, JsonDecoder]:
        steps: list[_Step] = []
        current_type, version = event_type, schema_version
        while True:
            cls = self._class_by_type.get(current_type)
            if cls is not None:
                target = schema_version_of(cls)
                if version == target:
                    break
                if version > target:
                    raise EventSchemaTooNew(current_type, version, target)
            step = self._steps.get((current_type, version))
            if step is None:
                if cls is None:
                    raise UnknownEventType(current_type, version)
                raise MissingUpcaster(current_type, version, schema_version_of(cls))
            steps.append(step)
            current_type, version = step.renamed_to or current_type, version + 1
        if not steps:
            return cls, msgspec.json.Decoder(cls).decode
        return cls, _upcasting_decoder(cls, tuple(step.upcast for step in steps), event_type, schema_version)


def schema_version_of(cls: type) -> int:
    version = getattr(cls, "schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInput(f"{cls.__name__}.schema_version must be an integer >= 1, not {version!r}")
    return version


def _field_names(cls: type) -> tuple[str, ...]:
    if issubclass(cls, msgspec.Struct):
        return cls.__struct_fields__
    fields: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(cls)  # type: ignore[arg-type]
    return tuple(field.name for field in fields)


def _upcasting_decoder(
    cls: type, upcasts: tuple[Upcaster, ...], event_type: str, schema_version: int
) -> JsonDecoder:
    def decode_old_event(json_data: str) -> Any:
        data = _decode_dict(json_data)
        for upcast in upcasts:
            try:
                data = upcast(data)
            except Exception as error:
                name = getattr(upcast, "__name__", repr(upcast))
                raise EventDataInvalid(
                    event_type, schema_version, f"upcaster {name} failed: {error!r}"
                ) from error
        return msgspec.convert(data, cls)

    return decode_old_event
