"""Our tables, beside optuna's in the same database.

Optuna holds the trials; these tables hold what optuna cannot: the architectures (by canonical
hash) and the trained weights of every completed trial, as a checksummed safetensors blob.
"""
from __future__ import annotations

import datetime

from sqlalchemy import (
    JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

MAX_NAME_LENGTH = 512


class BaseModel(DeclarativeBase):
    pass


class ArchitectureModel(BaseModel):
    """One architecture of one space, stored once whatever the number of trials that used it."""

    __tablename__ = "metanas_architectures"
    __table_args__ = (UniqueConstraint("space", "arch_hash"),)

    architecture_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space: Mapped[str] = mapped_column(String(64))
    arch_hash: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[str] = mapped_column(Text)  # canonical JSON of the architecture
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=datetime.datetime.utcnow)

    models: Mapped[list[TrainedModelModel]] = relationship(back_populates="architecture")


class TrainedModelModel(BaseModel):
    """The trained weights of one trial, with what is needed to rebuild the module.

    Parameter count and FLOPs live here rather than on the architecture: both depend on the
    task's input and output sizes (and FLOPs on its graphs).
    """

    __tablename__ = "metanas_trained_models"
    __table_args__ = (UniqueConstraint("study_name", "trial_number"),)

    model_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    architecture_id: Mapped[int] = mapped_column(
        ForeignKey("metanas_architectures.architecture_id")
    )
    dataset: Mapped[str] = mapped_column(String(128))
    level: Mapped[str] = mapped_column(String(16))        # "node" or "graph"
    in_channels: Mapped[int] = mapped_column(Integer)
    out_channels: Mapped[int] = mapped_column(Integer)
    num_params: Mapped[int] = mapped_column(BigInteger)
    flops: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # one forward pass
    metrics: Mapped[dict] = mapped_column(JSON)           # train/val/test accuracy and losses
    weights: Mapped[bytes] = mapped_column(LargeBinary)   # safetensors bytes of the state_dict
    weights_sha256: Mapped[str] = mapped_column(String(64))
    weights_nbytes: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=datetime.datetime.utcnow)

    architecture: Mapped[ArchitectureModel] = relationship(back_populates="models")


class ZooCheckpointModel(BaseModel):
    """A trial's weights and measured metrics after one epoch of its training (model zoos).

    A zoo is a study: the trial's architecture and final (best-validation) model live in
    :class:`TrainedModelModel`; this table adds the network at every checkpoint epoch, so a
    metanetwork learns from networks at several stages of training. Splits of a zoo must be by
    trial (training run), never by checkpoint.
    """

    __tablename__ = "metanas_zoo_checkpoints"
    __table_args__ = (UniqueConstraint("study_name", "trial_number", "epoch"),)

    checkpoint_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), index=True)
    trial_number: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict] = mapped_column(JSON)           # train/val/test accuracy and losses
    weights: Mapped[bytes] = mapped_column(LargeBinary)   # safetensors bytes of the state_dict
    weights_sha256: Mapped[str] = mapped_column(String(64))
    weights_nbytes: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=datetime.datetime.utcnow)
