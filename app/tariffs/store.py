"""Saving and loading tariffs: every version's JSON is validated by `schema.load_tariff` before it
is stored, and stored versions are never edited (a price change is a new version), so parsed
versions are cached (by date and text)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from app.tariffs.model import TariffVersion
from app.tariffs.models import StoredTariff, StoredTariffVersion
from app.tariffs.schema import load_tariff

_parsed: dict[tuple[dt.date, str], TariffVersion] = {}


def add_tariff(session: Session, name: str, tariff_json: str,
               effective_from: dt.date = dt.date(2000, 1, 1)) -> StoredTariff:
    """A new named tariff with its first version. Raises `TariffError` (nothing saved) when the
    JSON is not a valid tariff."""
    load_tariff(tariff_json)
    tariff = StoredTariff(name=name)
    session.add(tariff)
    session.flush()
    add_version(session, tariff.id, effective_from, tariff_json)
    return tariff


def add_version(session: Session, tariff_id: int, effective_from: dt.date,
                tariff_json: str) -> StoredTariffVersion:
    """A new version of a tariff, in effect from local midnight of `effective_from`. Raises
    `TariffError` when the JSON is not a valid tariff; two versions of a tariff on one date
    violate a UNIQUE constraint."""
    load_tariff(tariff_json)
    version = StoredTariffVersion(tariff_id=tariff_id, effective_from=effective_from,
                                  tariff_json=tariff_json)
    session.add(version)
    session.flush()
    return version


def tariff_versions(session: Session, tariff_id: int) -> list[TariffVersion]:
    """The parsed versions of a tariff, oldest first (one query; parsing cached)."""
    rows = session.exec(select(StoredTariffVersion.id, StoredTariffVersion.effective_from,
                               StoredTariffVersion.tariff_json)
                        .where(StoredTariffVersion.tariff_id == tariff_id)
                        .order_by(StoredTariffVersion.effective_from)).all()
    return [parsed_version(row_id, day, text) for row_id, day, text in rows]


def parsed_version(row_id: int, effective_from: dt.date, tariff_json: str) -> TariffVersion:
    key = (effective_from, tariff_json)  # the text itself: row ids repeat across databases
    version = _parsed.get(key)
    if version is None:
        version = _parsed[key] = TariffVersion(effective_from, load_tariff(tariff_json))
    return version
