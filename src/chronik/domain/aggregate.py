"""Aggregates: a consistency boundary whose state is nothing but the fold of its own events.

An aggregate keeps its state in one typed msgspec `Struct` (`self.state`), changed only by
appliers, one per event class:

    class CartState(msgspec.Struct):
        items: dict[str, int] = {}
        checked_out: bool = False

    class Cart(Aggregate[CartState]):
        category = "cart"

        def add_item(self, sku: str, quantity: int) -> None:      # a command: decide, then record
            if self.state.checked_out:
                raise CartAlreadyCheckedOut(self.id)
            self.record(ItemAdded(sku, quantity))

        @applies(ItemAdded)                                        # an applier: change state, never refuse
        def _item_added(self, event: ItemAdded) -> None:
            self.state.items[event.sku] = self.state.items.get(event.sku, 0) + event.quantity

Why state lives in one Struct: a snapshot is then simply that Struct encoded as JSON, restoring one
is decoding it (no command logic runs, no constructor side effects), and the CLI can show any
aggregate's state as JSON without knowing its class.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from chronik.errors import ChronikError, InvalidInput
from chronik.events.envelope import new_event_id

StateT = TypeVar("StateT", bound=msgspec.Struct)
FunctionT = TypeVar("FunctionT", bound=Callable[..., None])

Applier = Callable[[Any, Any], None]
"""An applier as stored in the dispatch table: the unbound method, called as applier(aggregate, event)."""

_APPLIES_TO = "__chronik_applies_to__"


def applies(*event_classes: type) -> Callable[[FunctionT], FunctionT]:
    """Mark a method as the applier of these event classes (they must be registered with the codec
    the repository uses; the repository registers them itself when they are not)."""
    if not event_classes:
        raise InvalidInput("@applies needs at least one event class")

    def mark(function: FunctionT) -> FunctionT:
        setattr(function, _APPLIES_TO, (*getattr(function, _APPLIES_TO, ()), *event_classes))
        return function

    return mark


class NoApplier(ChronikError):
    """An aggregate was handed an event it has no applier for: its history and its code disagree."""

    def __init__(self, aggregate: str, event_class: str) -> None:
        self.aggregate = aggregate
        self.event_class = event_class
        super().__init__(
            f"{aggregate} has no applier for {event_class}: add one with @applies({event_class})"
        )


class PendingEvent(msgspec.Struct, frozen=True):
    """A recorded-but-unsaved event, its business time (None: when the store records it) and its id.

    The id is fixed when the command records the event, not when it is saved: re-sending a save
    whose outcome was unknown (a lost connection) is then acknowledged by the store, not doubled.
    """

    event: Any
    occurred_at: datetime | None = None
    event_id: uuid.UUID = msgspec.field(default_factory=new_event_id)  # time-ordered: see new_event_id


class Aggregate(Generic[StateT]):
    """Base class of aggregates. Subclasses set `category` and parametrize the state type.

    Class attributes a subclass may set:

    * `category`: the stream category; the stream of aggregate `id` is `f"{category}-{id}"`.
    * `snapshot_schema_version`: bump it whenever `State` changes shape or meaning; snapshots of
      other versions are then ignored (and rebuilt), never misread.
    * `snapshot_every`: save a snapshot every N events (None: never), unless the repository is given
      another policy for this class.
    """

    category: ClassVar[str]
    state_type: ClassVar[type[msgspec.Struct]]
    snapshot_schema_version: ClassVar[int] = 1
    snapshot_every: ClassVar[int | None] = None
    appliers: ClassVar[dict[type, Applier]] = {}

    def __init__(self, id: str, state: StateT | None = None, version: int | None = None) -> None:
        if not isinstance(id, str) or not id:
            raise InvalidInput(f"an aggregate id must be a non-empty string, not {id!r}")
        self.id = id
        self.state: StateT = state if state is not None else self.initial_state()
        self.version = version
        """Version of the last event this object was built from or saved; None for a new aggregate."""
        self._pending: list[PendingEvent] = []
        self.read_only = False
        """True for a view of the past (loaded as of a version or time): saving it is refused."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "state_type" not in cls.__dict__:
            state_type = _state_type_from_bases(cls)
            if state_type is not None:
                cls.state_type = state_type
        category = cls.__dict__.get("category")
        if category is not None and (not isinstance(category, str) or not category or "-" in category):
            raise InvalidInput(f"{cls.__name__}.category must be a non-empty string without '-'")
        appliers = dict(cls.appliers)  # inherited appliers, overridable
        for value in cls.__dict__.values():
            for event_class in getattr(value, _APPLIES_TO, ()):
                appliers[event_class] = value
        cls.appliers = appliers

    @classmethod
    def initial_state(cls) -> StateT:
        """The state before any event. Override when a field has no sensible default."""
        state_type = getattr(cls, "state_type", None)
        if state_type is None:
            raise InvalidInput(
                f"{cls.__name__} does not say its state type: write class {cls.__name__}(Aggregate[MyState])"
            )
        state: StateT = state_type()
        return state

    @classmethod
    def stream_name(cls, id: str) -> str:
        return f"{cls.category}-{id}"

    @property
    def stream(self) -> str:
        return self.stream_name(self.id)

    @property
    def pending_events(self) -> Sequence[Any]:
        """Events recorded by commands since the last load or save, in order."""
        return tuple(pending.event for pending in self._pending)

    @property
    def pending(self) -> Sequence[PendingEvent]:
        return tuple(self._pending)

    def record(self, event: object, *, occurred_at: datetime | None = None) -> None:
        """Apply a decided event to the state now and keep it until the repository saves it."""
        self.apply(event)
        self._pending.append(PendingEvent(event, occurred_at))

    def apply(self, event: object) -> None:
        applier = self.appliers.get(type(event))
        if applier is None:
            raise NoApplier(type(self).__name__, type(event).__name__)
        applier(self, event)

    def mark_saved(self, version: int | None) -> None:
        self._pending.clear()
        self.version = version

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready builtins, for tools that do not know the class."""
        builtins: dict[str, Any] = msgspec.to_builtins(self.state)
        return builtins

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} v{self.version} {self.state!r}>"


def _state_type_from_bases(cls: type) -> type[msgspec.Struct] | None:
    for base in getattr(cls, "__orig_bases__", ()):
        if typing.get_origin(base) is Aggregate:
            (argument,) = typing.get_args(base)
            if isinstance(argument, type) and issubclass(argument, msgspec.Struct):
                return argument
            raise InvalidInput(f"{cls.__name__}: the state type must be a msgspec Struct, not {argument!r}")
    return None
