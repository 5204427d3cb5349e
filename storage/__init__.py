"""SQL storage through SQLAlchemy: one engine factory, optuna's trials, our architectures and
trained weights in the same database."""
from __future__ import annotations

from storage.engine import (
    DEFAULT_STORAGE, StorageURLError, create_engine, engine_kwargs, existing_database, is_sqlite,
    parse_url, reading_url, redact,
)
from storage.optuna_storage import (
    NoStudiesError, UnknownStudyError, UnstampedSchemaError, check_study, make_optuna_storage, reading_storage,
)
from storage.store import ChecksumError, ModelStore, StoredCheckpoint, StoredModel

__all__ = [
    "ChecksumError", "DEFAULT_STORAGE", "ModelStore", "NoStudiesError", "StorageURLError", "StoredCheckpoint", "StoredModel",
    "UnknownStudyError", "UnstampedSchemaError", "check_study", "create_engine", "engine_kwargs", "existing_database", "is_sqlite", "make_optuna_storage", "parse_url",
    "reading_storage", "reading_url", "redact",
]
