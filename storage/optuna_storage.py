"""Optuna's RDBStorage on the same URL, with heartbeats so a killed worker's trial is failed and
retried instead of staying RUNNING for ever."""
from __future__ import annotations

import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from storage.engine import engine_kwargs, is_sqlite, parse_url, retry_schema_race, sqlite_journal_pragmas

#: seconds between a running trial's heartbeats
HEARTBEAT_INTERVAL = 30
#: seconds without a heartbeat after which a RUNNING trial counts as dead
GRACE_PERIOD = 120
#: how often a trial failed by a dead worker is retried
MAX_RETRY = 2


def make_optuna_storage(
    url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int | None = None,
    max_retry: int = MAX_RETRY,
) -> RDBStorage:
    """``RDBStorage`` for ``url`` with heartbeats and retries of trials of dead workers; on
    SQLite its connections journal as :func:`storage.engine.sqlite_journal_pragmas` says."""
    parsed = parse_url(url)  # checked once; the URL object is not parsed again below
    grace = grace_period if grace_period is not None else max(GRACE_PERIOD, 2 * heartbeat_interval)
    storage = retry_schema_race(lambda: RDBStorage(
        url, engine_kwargs=engine_kwargs(parsed), heartbeat_interval=heartbeat_interval,
        grace_period=grace,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
    ))
    if is_sqlite(parsed):
        sqlalchemy.event.listen(storage.engine, "connect", sqlite_journal_pragmas)
        storage.engine.dispose()  # connections opened while creating the schema lack the pragmas
    return storage
