"""Optuna's RDBStorage on the same URL, with heartbeats so a killed worker's trial is failed and
retried instead of staying RUNNING for ever; :func:`check_study` refuses a study name the
storage does not hold, naming those it does."""
from __future__ import annotations

from collections.abc import Iterable

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from storage.engine import (
    DEFAULT_STORAGE, StorageURLError, engine_kwargs, is_sqlite, missing_tables, parse_url,
    reading_engine_kwargs, redact, retry_schema_race, sqlite_in_memory, sqlite_journal_pragmas,
)

#: seconds between a running trial's heartbeats
HEARTBEAT_INTERVAL = 30
#: seconds without a heartbeat after which a RUNNING trial counts as dead
GRACE_PERIOD = 120
#: how often a trial failed by a dead worker is retried
MAX_RETRY = 2


def grace_seconds(heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int | None = None) -> int:
    """Seconds without a heartbeat after which a RUNNING trial counts as dead: ``grace_period``,
    by default :data:`GRACE_PERIOD` or two heartbeats, whichever is longer."""
    return grace_period if grace_period is not None else max(GRACE_PERIOD, 2 * heartbeat_interval)


def make_optuna_storage(
    url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int | None = None,
    max_retry: int = MAX_RETRY,
) -> RDBStorage:
    """``RDBStorage`` for ``url`` with heartbeats and retries of trials of dead workers; on
    SQLite its connections journal as :func:`storage.engine.sqlite_journal_pragmas` says."""
    parsed = parse_url(url)  # checked once; the URL object is not parsed again below
    if sqlite_in_memory(parsed):
        raise StorageURLError(
            f"storage URL {redact(parsed)!r} is an SQLite database in memory: the study and its "
            f"trials would be gone when the command ends, and its workers could not share it; "
            f"name a file, e.g. {DEFAULT_STORAGE!r}"
        )
    storage = retry_schema_race(lambda: RDBStorage(
        url, engine_kwargs=engine_kwargs(parsed), heartbeat_interval=heartbeat_interval,
        grace_period=grace_seconds(heartbeat_interval, grace_period),
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
    ))
    if is_sqlite(parsed):
        sqlalchemy.event.listen(storage.engine, "connect", sqlite_journal_pragmas)
        storage.engine.dispose()  # connections opened while creating the schema lack the pragmas
    return storage


#: tables of optuna's that a database of studies holds; RDBStorage writes them into one that
#: lacks them (its version table even with ``skip_table_creation``)
OPTUNA_TABLES = ("studies", "version_info")


def _missing_stamps(engine: sqlalchemy.engine.Engine) -> list[str]:
    """What the database of ``engine`` lacks of optuna's schema version stamps (its table
    ``alembic_version`` and the rows of it and ``version_info``), which ``RDBStorage`` writes
    into a database that lacks them, even with ``skip_table_creation``."""
    absent = missing_tables(engine, ("alembic_version",))
    rows = _row_counts(engine, ("alembic_version", "version_info"))
    return ([f"the table {name}" for name in absent]
            + [f"a row in {name}" for name, count in rows.items() if count == 0])


def reading_storage(url: str) -> RDBStorage:
    """``RDBStorage`` for a command that only reads ``url``: opened as :func:`storage.reading_url`
    says (no SQLite file created, one in a folder this user cannot write read-only), on
    connections that cannot write (:func:`storage.engine.reading_engine_kwargs`, with the
    connection and lock timeouts of :func:`storage.engine_kwargs`, which optuna given a URL
    alone goes without). :class:`NoStudiesError` for a database without optuna's tables (an
    empty file, another application's database), :class:`UnstampedSchemaError` for one without
    optuna's schema version stamps; either is left as it is."""
    from storage.engine import reading_engine, reading_url
    from storage.models import BaseModel

    engine = reading_engine(url)
    try:
        missing = missing_tables(engine, OPTUNA_TABLES)
        metanas = _held_rows(engine, BaseModel.metadata.tables) if missing else None
        unstamped = [] if missing else _missing_stamps(engine)
    finally:
        engine.dispose()
    if missing:
        raise NoStudiesError(url, missing, metanas)
    if unstamped:
        raise UnstampedSchemaError(url, unstamped)
    return RDBStorage(reading_url(url), engine_kwargs=reading_engine_kwargs(url), skip_table_creation=True)


def _held_rows(engine: sqlalchemy.Engine, tables: Iterable[str]) -> int | None:
    """How many rows those of ``tables`` that the database holds have together (read, never
    made); None when it holds none of them."""
    rows = _row_counts(engine, tables)
    return sum(rows.values()) if rows else None


def _row_counts(engine: sqlalchemy.Engine, tables: Iterable[str]) -> dict[str, int]:
    """The rows of each of ``tables`` that the database holds (a table it lacks is left out)."""
    tables = list(tables)
    absent = missing_tables(engine, tables)
    with engine.connect() as connection:
        return {name: connection.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM {name}")).scalar()
                for name in tables if name not in absent}


class UnknownStudyError(KeyError, ValueError):
    """A study name the storage does not hold: a failed lookup (``KeyError``) and bad input
    (``ValueError``: the CLI exits 2), naming the studies the storage holds."""

    def __str__(self) -> str:  # the message, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


def check_study(url: str, name: str, also: Iterable[str] = ()) -> None:
    """:class:`UnknownStudyError` unless the storage ``url`` holds a study ``name`` (or ``name``
    is one of ``also``, names that count as studies too); it names the studies there, as
    ``metanas studies`` lists them, then those of ``also``. An SQLite file that does not exist
    is ``FileNotFoundError`` (none is created), one in a folder this user cannot write is read
    read-only (:func:`reading_storage`)."""
    try:
        names = optuna.get_all_study_names(reading_storage(url))
    except NoStudiesError as error:
        if name in also:
            return
        raise UnknownStudyError(
            f"no study {name!r} in {error.url}: {error.why}; studies there: {list(also)}") from None
    names += [other for other in also if other not in names]
    if name not in names:
        raise UnknownStudyError(f"no study {name!r} in {redact(url)}; studies there: {names}")


class NoStudiesError(UnknownStudyError):
    """A database without optuna's tables (:data:`OPTUNA_TABLES`): it holds no study (``metanas``:
    the rows of metanas's tables there, None without them), and a command that only reads it
    leaves it as it is."""

    def __init__(self, url: str, missing: Iterable[str], metanas: int | None = None) -> None:
        self.url = redact(url)
        what = ("not a metanas or optuna database" if metanas is None
                else "it holds metanas's tables but no stored network and no optuna study"
                if metanas == 0 else "it holds networks stored by metanas but no optuna study")
        self.why = f"it lacks optuna's tables {', '.join(missing)}: {what} (left unchanged)"
        super().__init__(f"no studies in {self.url}: {self.why}")


class UnstampedSchemaError(RuntimeError):
    """An optuna database without its schema version stamps (:func:`_missing_stamps`): optuna
    before 1.2 wrote none, and a search killed while creating the schema leaves them out.
    Optuna writes them whenever it opens a database, so a command that only reads refuses it."""

    def __init__(self, url: str, missing: Iterable[str]) -> None:
        shown = redact(url)
        super().__init__(
            f"cannot read the studies in {shown}: optuna's schema there lacks {', '.join(missing)} "
            f"(its version stamp; optuna before 1.2 wrote none, and a search killed while creating "
            f"the schema leaves it out), which optuna would write into a database this command only "
            f"reads (left unchanged); a search on it (metanas search --storage {shown} ...) completes "
            f"the schema, and 'optuna storage upgrade --storage {shown}' then upgrades one of optuna "
            f"before 1.2"
        )
