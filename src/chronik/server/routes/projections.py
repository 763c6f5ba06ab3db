"""Projections: status and lag, their live rows, and rebuilds (in the background, with progress)."""

from __future__ import annotations

import threading
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from chronik.errors import ChronikError
from chronik.projections import Projection, dialect_for, projection_named, rebuild, registered_projections
from chronik.projections.errors import UnsupportedStore
from chronik.projections.projection import live_slot
from chronik.server.context import AdminKey, ReadKey, ServerState, StateDep, check_unrestricted
from chronik.server.openapi import problems
from chronik.server.problems import Problem

router = APIRouter(prefix="/api/projections", tags=["projections"], responses=problems(503))
NOT_FOUND: Final = (404, "No projection of that name (registered in the code or built in the store).")
NO_SQL: Final = (501, "Projections need SQL: not on `memory://`.")


def projection_for(state: ServerState, name: str) -> Projection:
    """The server's instance of a registered projection (one per name, bound to the server's store)."""
    with state.lock:
        found = state.projections.get(name)
        if found is None:
            found = state.projections[name] = projection_named(name)(state.store)
        return found


def projection_statuses(state: ServerState) -> list[dict[str, Any]]:
    try:
        dialect = dialect_for(state.store)
    except UnsupportedStore:
        return []
    store = state.store
    with dialect.read_snapshot(store) as connection:
        try:
            rows = {row.name: row for row in dialect.registry_rows(connection)}
        except Exception:  # no registry table yet (created by the first projection): nothing built
            rows = {}
        head = dialect.head_position(connection)
    code = registered_projections()
    out = []
    for name in sorted(rows.keys() | code.keys()):
        row, cls = rows.get(name), code.get(name)
        rebuild_info = state.rebuilds.get(name)
        item: dict[str, Any] = {
            "name": name,
            "code_version": None if cls is None else cls.version,
            "tables": [] if cls is None else list(cls.tables),
            "built": row is not None,
            "live_version": None if row is None else row.live_version,
            "built_by_code_version": None if row is None else row.code_version,
            "position": None if row is None else row.position,
            "head_position": head,
            "lag": None if row is None else max(0, head - row.position),
            "needs_rebuild": row is not None and cls is not None and cls.version != row.code_version,
            "building": None,
            "rebuild": rebuild_info,
        }
        if row is not None and row.building_version is not None:
            position = row.building_position or 0
            item["building"] = {
                "version": row.building_version,
                "position": position,
                "progress": 1.0 if head == 0 else min(1.0, position / head),
            }
        out.append(item)
    return out


@router.get("", summary="Projections and their lag")
def list_projections(state: StateDep, key: ReadKey) -> dict[str, Any]:
    """Every projection known to the code or to the database: versions, checkpoint, lag, rebuild progress."""
    check_unrestricted(key, "projections")
    return {"projections": projection_statuses(state)}


@router.get("/{name}", summary="One projection's status", responses=problems(NOT_FOUND))
def get_projection(name: str, state: StateDep, key: ReadKey) -> dict[str, Any]:
    check_unrestricted(key, "projections")
    for item in projection_statuses(state):
        if item["name"] == name:
            return item
    raise Problem(404, "Projection not found", f"no projection named {name!r}")


@router.get(
    "/{name}/tables/{table}",
    summary="Query a projection's live table",
    responses=problems((404, "No such projection or table, or the projection is not built."), NO_SQL),
)
def query_table(
    name: str,
    table: str,
    state: StateDep,
    key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Rows of one of the projection's tables, from its live version (one read snapshot)."""
    check_unrestricted(key, "projections")
    projection = projection_for(state, name)
    if table not in projection.tables:
        raise Problem(
            404, "Table not found", f"projection {name!r} has tables {', '.join(projection.tables)}"
        )
    projection.ensure()
    with projection.dialect.read_snapshot(state.store) as connection:
        row = projection.dialect.registry_row(connection, name)
        if row is None:
            raise Problem(404, "Projection not built", f"projection {name!r} is not registered in this store")
        tx = projection.tx(connection, live_slot(row.live_version))
        cursor = connection.execute(tx.sql(f"SELECT * FROM {{{table}}} LIMIT ? OFFSET ?"), (limit, offset))
        columns = [column[0] for column in cursor.description]
        rows = [list(values) for values in cursor.fetchall()]
    return {
        "projection": name,
        "table": table,
        "live_version": row.live_version,
        "position": row.position,
        "columns": columns,
        "rows": rows,
    }


@router.post(
    "/{name}/rebuild",
    status_code=202,
    summary="Rebuild a projection",
    responses=problems(NOT_FOUND, (409, "A rebuild of it is running."), NO_SQL),
)
def start_rebuild(name: str, state: StateDep, key: AdminKey) -> JSONResponse:
    """Rebuild into a new table version while the live one serves, then swap; follow it on GET /{name}."""
    projection = projection_for(state, name)
    with state.lock:
        current = state.rebuilds.get(name)
        if current is not None and current.get("state") == "running":
            raise Problem(409, "Rebuild running", f"projection {name!r} is already being rebuilt")
        info: dict[str, Any] = {"state": "running", "result": None, "error": None}
        state.rebuilds[name] = info

    def work() -> None:
        try:
            result = rebuild(projection)
        except ChronikError as error:
            info.update(state="failed", error=str(error))
        except Exception as error:  # reported, never raised into the thread's void
            info.update(state="failed", error=f"{type(error).__name__}: {error}")
        else:
            info.update(
                state="done",
                result={
                    "old_version": result.old_version,
                    "new_version": result.new_version,
                    "position": result.position,
                    "events_applied": result.events_applied,
                },
            )

    threading.Thread(target=work, name=f"rebuild-{name}", daemon=True).start()
    return JSONResponse({"projection": name, "rebuild": info}, status_code=202)
