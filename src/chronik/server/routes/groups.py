"""Consumer groups: status (partitions, owners, epochs, lag, parked), parked events, replay and discard.

Replaying runs parked events through the group's handler, so the server must know it: handlers
are registered with the server (`ServerState.group_handlers`; the demo registers its own). A
group whose handler this server does not run can be inspected and its parked events discarded,
but not replayed (409 says so).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from chronik.groups import discard_parked as discard
from chronik.groups import group_status, list_parked, replay_parked
from chronik.groups.coordinator import coordinator_for
from chronik.server.context import AdminKey, ReadKey, StateDep, check_unrestricted
from chronik.server.models import MAX_INT, NOT_A_BOOL
from chronik.server.openapi import problems
from chronik.server.problems import Problem

router = APIRouter(prefix="/api/groups", tags=["consumer groups"], responses=problems(503))
NOT_FOUND: Final = (404, "No consumer group of that name.")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream: str | None = Field(default=None, max_length=255, description="Only this stream's parked events.")
    parked_id: Annotated[int, Field(ge=1, le=MAX_INT), NOT_A_BOOL] | None = Field(
        default=None, description="Only this parked event."
    )


class DiscardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=1, le=MAX_INT), NOT_A_BOOL]] = Field(min_length=1, max_length=1000)


def _builtins(value: object) -> Any:
    return msgspec.to_builtins(value)


@router.get("", summary="Consumer groups")
def list_groups(state: StateDep, key: ReadKey) -> dict[str, Any]:
    """Every group with its totals: lag, parked events, members, unowned partitions."""
    check_unrestricted(key, "consumer groups")
    out = []
    for config in coordinator_for(state.store).list_groups():
        status = group_status(state.store, config.name)
        out.append(
            {
                "name": config.name,
                "partitions": config.partitions,
                "categories": list(config.categories),
                "event_types": list(config.event_types),
                "lag": status.total_lag,
                "parked": status.parked,
                "members": len(status.members),
                "unowned": list(status.unowned),
                "replayable": config.name in state.group_handlers,
            }
        )
    return {"groups": out}


@router.get("/{group}", summary="One group's status", responses=problems(NOT_FOUND))
def get_group(group: str, state: StateDep, key: ReadKey) -> dict[str, Any]:
    """Partitions with owner, epoch, lease, checkpoint, lag and parked count; members and their partitions."""
    check_unrestricted(key, "consumer groups")
    status = group_status(state.store, group)
    body: dict[str, Any] = _builtins(status)
    body.update(
        total_lag=status.total_lag,
        parked=status.parked,
        unowned=list(status.unowned),
        replayable=group in state.group_handlers,
    )
    return body


@router.get("/{group}/parked", summary="Parked events", responses=problems(NOT_FOUND))
def get_parked(
    group: str,
    state: StateDep,
    key: ReadKey,
    stream: Annotated[str | None, Query(max_length=255)] = None,
) -> dict[str, Any]:
    """Parked events in parking order, with the error and whether each waits behind another."""
    check_unrestricted(key, "consumer groups")
    return {"group": group, "parked": _builtins(list_parked(state.store, group, stream=stream))}


@router.post(
    "/{group}/parked/replay",
    summary="Replay parked events",
    responses=problems(
        NOT_FOUND,
        (
            409,
            "This server does not run its handler, or the parked event is gone or waits behind another.",
        ),
    ),
)
def replay(group: str, body: ReplayIn, state: StateDep, key: AdminKey) -> dict[str, Any]:
    """Run parked events through the group's handler again, each stream in order; failures stay parked."""
    handler = state.group_handlers.get(group)
    if handler is None:
        coordinator_for(state.store).load_group(group)  # 404 for an unknown group
        raise Problem(
            409,
            "No handler",
            f"this server does not run group {group!r}'s handler; replay with `chronik groups replay-parked`",
        )
    result = replay_parked(state.store, group, handler, stream=body.stream, parked_id=body.parked_id)
    return {
        "replayed": list(result.replayed),
        "failed": [{"id": parked_id, "error": error} for parked_id, error in result.failed],
    }


@router.post("/{group}/parked/discard", summary="Discard parked events", responses=problems(NOT_FOUND))
def discard_events(group: str, body: DiscardIn, state: StateDep, key: AdminKey) -> dict[str, Any]:
    """Drop parked events for good: their effects are never applied (404 for an unknown group)."""
    return {"discarded": discard(state.store, group, body.ids)}
