"""Tariffs in the database: a named tariff and its dated versions, each version's JSON form.

Design: the JSON form (docs/tariffs.md) lives on the *version*, not on the tariff. A price change
is a new version of the same tariff effective from a date, never an edit, so a charge can always
be re-priced by the version that was in effect, and the accounts keep pointing at one tariff id
across changes. A version's JSON is validated by `app.tariffs.schema.parse_tariff` before it is
saved (`app.tariffs.store.add_version`) and is never updated afterwards (insert-only, like the
ledger), which is also what lets the billing code cache parsed versions by id.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class StoredTariff(SQLModel, table=True):
    """A named tariff (e.g. "浙江 居民 阶梯+分时"); its prices are in its versions."""

    __tablename__ = "tariff"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class StoredTariffVersion(SQLModel, table=True):
    """One version of a tariff, in effect from local midnight (China time) of `effective_from`
    until the next version's. `tariff_json` is the tariff's JSON form, validated on save, never edited."""

    __tablename__ = "tariff_version"
    __table_args__ = (sa.UniqueConstraint("tariff_id", "effective_from"),)

    id: int | None = Field(default=None, primary_key=True)
    tariff_id: int = Field(foreign_key="tariff.id", index=True)
    effective_from: dt.date
    tariff_json: str
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
