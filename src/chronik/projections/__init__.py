"""Projections: read models in SQL tables, kept current from the log, rebuilt without downtime.

The layer above the store: it reads the log through the store contract, writes its tables through
the unit of work (so rows and checkpoint commit together), and keeps everything database-specific
behind `dialect.py`'s `Dialect` (one module per backend: `sqlite.py`, `postgres.py`).
See `projection.py` for the API in a dozen lines.
"""

from chronik.projections.dialect import Dialect, RegistryRow, dialect_for, register_dialect
from chronik.projections.engine import BatchResult, ProjectionRunner, attach_inline, catch_up, run_batch
from chronik.projections.errors import (
    InvalidProjection,
    ProjectionError,
    ProjectionHandlerFailed,
    ProjectionMoved,
    ProjectionNotBuilt,
    ProjectionNotFound,
    ProjectionTimeout,
    UnsupportedStore,
)
from chronik.projections.projection import (
    Projection,
    ProjectionTx,
    handles,
    projection_named,
    register_projection,
    registered_projections,
)
from chronik.projections.rebuild import (
    RebuildResult,
    ReconcileReport,
    RowDifference,
    ScratchView,
    build_as_of,
    build_scratch,
    drop_scratch_label,
    rebuild,
    reconcile,
    scratch_labels,
)
from chronik.projections.sqlite import SQLiteDialect

__all__ = [
    "BatchResult",
    "Dialect",
    "InvalidProjection",
    "Projection",
    "ProjectionError",
    "ProjectionHandlerFailed",
    "ProjectionMoved",
    "ProjectionNotBuilt",
    "ProjectionNotFound",
    "ProjectionRunner",
    "ProjectionTimeout",
    "ProjectionTx",
    "RebuildResult",
    "ReconcileReport",
    "RegistryRow",
    "RowDifference",
    "SQLiteDialect",
    "ScratchView",
    "UnsupportedStore",
    "attach_inline",
    "build_as_of",
    "build_scratch",
    "catch_up",
    "dialect_for",
    "drop_scratch_label",
    "handles",
    "projection_named",
    "rebuild",
    "reconcile",
    "register_dialect",
    "register_projection",
    "registered_projections",
    "run_batch",
    "scratch_labels",
]
