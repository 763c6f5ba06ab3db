"""Scrape-time collectors: the figures read from the database when /metrics is scraped.

Log head, projection checkpoints and lag, consumer-group lag, parked events, members, unowned
partitions and ownership changes, subscription lag. A collector that fails (a store that is down)
is counted in `chronik_metrics_collector_errors_total` and the scrape still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chronik.groups import group_status
from chronik.groups.coordinator import coordinator_for
from chronik.server.context import ServerState
from chronik.server.routes.projections import projection_statuses

log = logging.getLogger("chronik.server.metrics")


def install_collectors(state: ServerState) -> None:
    metrics = state.metrics

    def log_and_subscriptions() -> None:
        head = state.store.head_position()
        metrics.head.set(head)
        positions = list(state.subscription_positions.values())
        metrics.subscription_lag.set(max((head - position for position in positions), default=0))

    def projections() -> None:
        for item in projection_statuses(state):
            if item["position"] is None:
                continue
            metrics.projection_position.set(item["position"], item["name"])
            metrics.projection_lag.set(item["lag"], item["name"])
            metrics.projection_rebuilding.set(1 if item["building"] else 0, item["name"])

    def groups() -> None:
        for config in coordinator_for(state.store).list_groups():
            status = group_status(state.store, config.name)
            metrics.group_lag.set(status.total_lag, config.name)
            metrics.group_parked.set(status.parked, config.name)
            metrics.group_members.set(len(status.members), config.name)
            metrics.group_unowned.set(len(status.unowned), config.name)
            metrics.group_assignments.set(sum(p.epoch for p in status.partitions), config.name)
        for member in state.members:
            counter = metrics.member_rebalances
            seen = counter.value(member.group)
            total = sum(m.stats.rebalances for m in state.members if m.group == member.group)
            if total > seen:
                counter.inc(member.group, amount=total - seen)

    for name, collector in (("log", log_and_subscriptions), ("projections", projections), ("groups", groups)):
        metrics.add_collector(_guarded(state, name, collector))


def _guarded(state: ServerState, name: str, collector: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            collector()
        except Exception:
            log.exception("metrics collector %s failed", name)
            state.metrics.collector_errors.inc(name)

    return run
