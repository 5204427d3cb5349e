"""One SQLAlchemy engine factory from a URL (SQLite by default, PostgreSQL for many workers)."""
from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.util import asbool

T = TypeVar("T")

DEFAULT_STORAGE = "sqlite:///metanas.db"
#: seconds a SQLite writer waits for a lock held by another worker before failing
SQLITE_BUSY_TIMEOUT = 60
#: seconds a PostgreSQL connection may take to open (libpq's default is to wait for ever on a
#: server that accepts but does not answer); a URL's own ``?connect_timeout=`` wins
CONNECT_TIMEOUT = 30


class StorageURLError(ValueError):
    """A storage URL that SQLAlchemy cannot use."""


def parse_url(url: str | URL) -> URL:
    """Parse and check a storage URL; :class:`StorageURLError` with a redacted URL otherwise."""
    if isinstance(url, URL):
        return url
    try:
        parsed = make_url(str(url))
    except Exception:  # SQLAlchemy raises ArgumentError with the raw (secret) text
        raise StorageURLError(
            f"malformed storage URL {redact(str(url))!r}: expected dialect://user@host/db, e.g. "
            f"{DEFAULT_STORAGE!r} or 'postgresql://user@localhost/metanas'"
        ) from None
    if "@" in (parsed.host or ""):  # the driver would print the password's tail as a host name
        raise StorageURLError(
            f"storage URL {redact(str(url))!r} has an '@' in its user name or password: "
            f"write it as %40"
        )
    try:
        dialect = parsed.get_dialect()
    except Exception:
        raise StorageURLError(
            f"storage URL {redact(str(url))!r} names an unknown database dialect "
            f"{parsed.drivername!r}; use sqlite or postgresql"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as error:  # optuna would say only "Failed to import DB access module"
        raise StorageURLError(
            f"storage URL {redact(str(url))!r} needs the driver module {error.name!r} of "
            f"{parsed.drivername!r}, which is not installed; use sqlite, or postgresql with "
            f"pip install -e '.[postgres]'"
        ) from None
    _check_sqlite_host(parsed, url)
    _check_sqlite_folder(parsed)
    _check_sqlite_query(parsed)
    return parsed


def _check_sqlite_host(url: URL, text: str) -> None:
    """``sqlite://metanas.db`` (two slashes) reads ``metanas.db`` as a host name, which SQLite
    has none of: SQLAlchemy refused it only when connecting, in four lines; refused here,
    naming the URL meant."""
    if url.get_backend_name() != "sqlite" or not (url.host or url.username or url.port):
        return
    path = "/".join(part for part in (url.host, url.database) if part)
    raise StorageURLError(
        f"storage URL {redact(text)!r} names a host, which SQLite has none of: a file is "
        f"sqlite:///RELATIVE/PATH or sqlite:////ABSOLUTE/PATH (three slashes, then the path), "
        f"here {'sqlite:///' + path!r}"
    )


def sqlite_in_memory(url: URL) -> bool:
    """Whether an SQLite URL names a database in memory: no file (``sqlite://``), ``:memory:``,
    or an SQLite URI (``uri=`` true, yes, on or 1, as SQLAlchemy reads it) ``file::memory:``,
    ``file:NAME?mode=memory``, ``file:NAME?vfs=memdb`` (SQLite's in-memory file system) or
    ``file:`` (an empty name: SQLite's private temporary database)."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    if database in ("", ":memory:"):
        return True
    if not (database.startswith("file:") and asbool(url.query.get("uri", False))):
        return False
    name = database[len("file:"):]
    return (name == "" or name.startswith(":memory:") or url.query.get("mode") == "memory"
            or url.query.get("vfs") == "memdb")


def _sqlite_file(url: URL) -> Path | None:
    """The file of an SQLite URL (``None``: another backend, in memory, or a ``file:`` URI)."""
    if url.get_backend_name() != "sqlite" or sqlite_in_memory(url) or (url.database or "").startswith("file:"):
        return None
    return Path(url.database or "")


def _check_sqlite_folder(url: URL) -> None:
    """An SQLite file must go into an existing folder (sqlite3 says only "unable to open
    database file")."""
    path = _sqlite_file(url)
    if path is None:
        return
    folder = path.parent
    if not folder.is_dir():
        raise StorageURLError(
            f"storage URL {redact(url)!r}: folder {str(folder)!r} of the SQLite file does not exist"
        )


#: query arguments that pysqlite reads itself; others are SQLite URI arguments, read with uri=true only
_PYSQLITE_ARGUMENTS = ("uri", "timeout", "isolation_level", "detect_types", "check_same_thread",
                       "cached_statements")


def _check_sqlite_query(url: URL) -> None:
    """SQLite URI arguments (``?mode=ro``) without ``uri=true`` would be ignored, with only an
    SAWarning to say so: refused, naming them."""
    if url.get_backend_name() != "sqlite" or asbool(url.query.get("uri", False)):
        return
    ignored = sorted(set(url.query) - set(_PYSQLITE_ARGUMENTS))
    if ignored:
        raise StorageURLError(
            f"storage URL {redact(url)!r}: SQLite would ignore {ignored} without uri=true; "
            f"commands that only read a database open it read-only themselves where its folder "
            f"cannot be written, so leave them out, or write an SQLite URI such as "
            f"'sqlite:///file:/path/metanas.db?mode=ro&uri=true'"
        )


def existing_database(url: str | URL) -> URL:
    """:func:`parse_url`, and for an SQLite file, ``FileNotFoundError`` when it does not exist:
    commands that only read a database must not create an empty one at a mistyped path."""
    parsed = parse_url(url)
    path = _sqlite_file(parsed)
    if path is not None and not path.is_file():
        raise FileNotFoundError(
            f"no SQLite database at {str(path)!r} ({redact(parsed)}); check the storage URL given"
        )
    return parsed


def reading_url(url: str) -> str:
    """``url`` for a command that only reads the database: an SQLite file in a folder this
    process cannot write is opened read-only, where WAL journaling would fail to create its
    ``-shm`` and ``-wal`` files beside it ("unable to open database file"). With a ``-shm``
    file there (a writer is or was connected) it is read through the write-ahead log
    (``mode=ro``); without one everything committed is in the file itself, which is read as
    ``immutable=1`` (SQLite opens no WAL file in a folder it cannot write otherwise). Any other
    URL is returned as it is; ``FileNotFoundError`` as :func:`existing_database` says."""
    parsed = existing_database(url)
    path = _sqlite_file(parsed)
    if path is None or os.access(path.resolve().parent, os.W_OK):
        return url
    shm, wal = (path.with_name(path.name + suffix) for suffix in ("-shm", "-wal"))
    if wal.exists() and not shm.exists():
        raise PermissionError(
            f"cannot read {str(path)!r}: its write-ahead log {wal.name} is read through a -shm "
            f"file, which cannot be created in the folder {str(path.resolve().parent)!r} (this "
            f"user cannot write it); copy the database with its -wal file into a writable folder"
        )
    access = {"mode": "ro"} if shm.exists() else {"immutable": "1"}
    return parsed.set(
        database=f"file:{quote(str(path.resolve()))}", query={**parsed.query, **access, "uri": "true"},
    ).render_as_string(hide_password=False)


class _QueryOnlyConnection(sqlite3.Connection):
    """An SQLite connection that cannot change its database (``PRAGMA query_only``): a write
    fails ("attempt to write a readonly database") instead of changing a file only read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA query_only=ON")


def reading_engine_kwargs(url: str | URL) -> dict[str, Any]:
    """:func:`engine_kwargs` for connections that cannot write: SQLite's ``query_only``,
    PostgreSQL's read-only transactions (``default_transaction_read_only``, after any
    ``?options=`` of the URL's own)."""
    parsed = parse_url(url)
    kwargs = engine_kwargs(parsed)
    connect_args = dict(kwargs.get("connect_args", {}))
    if parsed.get_backend_name() == "sqlite":
        connect_args["factory"] = _QueryOnlyConnection
    elif parsed.get_backend_name() == "postgresql":
        options = parsed.query.get("options", "")
        own = " ".join(options) if isinstance(options, tuple) else options
        connect_args["options"] = f"{own} -c default_transaction_read_only=on".strip()
    return {**kwargs, "connect_args": connect_args}


def reading_engine(url: str) -> Engine:
    """An engine for a command that only reads ``url``: opened as :func:`reading_url` says,
    on connections that cannot write (:func:`reading_engine_kwargs`), and, unlike
    :func:`create_engine`, leaving SQLite's journal mode as it is (turning WAL on rewrites the
    file's header)."""
    return sqlalchemy.create_engine(reading_url(url), **reading_engine_kwargs(url))


def missing_tables(engine: Engine, names: Iterable[str]) -> list[str]:
    """Those of the tables ``names`` that the database of ``engine`` lacks (read, never made)."""
    held = set(sqlalchemy.inspect(engine).get_table_names())
    return [name for name in names if name not in held]


def redact(url: str | URL) -> str:
    """The URL with any password replaced by ``***`` (safe to print or log): the user's, a
    ``password=`` or ``sslpassword=`` query parameter's, and all of one with an unencoded ``@``."""
    try:
        parsed = make_url(str(url))
        if "@" in (parsed.host or ""):  # "u:pa@ss@host": SQLAlchemy splits the password at "@"
            raise ValueError("unencoded @")
        secret = {key: "***" for key in parsed.query if "password" in key.lower()}
        rendered = parsed.update_query_dict(secret).render_as_string(hide_password=True)
        return rendered.replace("%2A%2A%2A", "***")
    except Exception:
        text = re.sub(r"(password=)[^&]*", r"\1***", str(url), flags=re.IGNORECASE)
        if "@" in text and "://" in text:
            scheme, rest = text.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
        return text


def is_sqlite(url: str | URL) -> bool:
    return parse_url(url).get_backend_name() == "sqlite"


def engine_kwargs(url: str | URL) -> dict[str, Any]:
    """Keyword arguments for ``create_engine`` that suit the backend (also given to optuna)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    return {"pool_pre_ping": True}


def create_engine(url: str | URL = DEFAULT_STORAGE) -> Engine:
    """An engine for ``url`` (checked by :func:`parse_url`); SQLite gets WAL journaling so that
    readers do not block the writer of another worker."""
    parsed = parse_url(url)
    engine = sqlalchemy.create_engine(parsed, **engine_kwargs(parsed))
    if parsed.get_backend_name() == "sqlite":
        sqlalchemy.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def retry_schema_race(create: Callable[[], T], attempts: int = 5) -> T:
    """Run ``create`` (which creates tables), retrying when another worker creating the same
    tables at the same moment makes it fail (PostgreSQL: duplicate type or relation)."""
    for attempt in range(attempts):
        try:
            return create()
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
    raise AssertionError("unreachable")


def sqlite_journal_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """WAL journaling with ``synchronous=NORMAL`` on an SQLite connection: a commit is one
    append to the write-ahead log, synced at checkpoints rather than at every commit. A killed
    trial or worker loses nothing committed (SQLite: "WAL mode is always consistent with
    synchronous=NORMAL"); only a power loss or OS crash can undo the last commits, never corrupt
    the file. Optuna commits every suggested parameter and user attribute separately, so this
    is most of a cheap trial's storage time (`experiments/results/supernet_search_cli*.md`)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    sqlite_journal_pragmas(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
