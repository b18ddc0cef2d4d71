"""A report as a table, written to XLSX (openpyxl, write-only) or to CSV (UTF-8 with BOM).

Values come in exact: money as integer fen, energy as integer Wh, times as aware UTC datetimes.
They are turned into what a spreadsheet shows at the last step, and only there:
- XLSX: money a number cell holding the exact yuan (`Decimal(fen).scaleb(-2)`, which openpyxl
  writes as its decimal text, "-1234.56": no float is ever computed from money), formatted
  `#,##0.00"元"`; energy a number cell of exact kWh (`Decimal(wh).scaleb(-3)`, `#,##0.000`);
  times local (China time) date cells. A frozen header row, column widths, a totals row of
  plain numbers (summed here from the integers, never an Excel formula), and a sheet
  "说明" with what was exported, by whom, when and any notes.
- CSV: the first table only; money "1234.56", energy "12.345", times "2026-11-30 08:00:00";
  UTF-8 with a BOM, which Excel in China opens as UTF-8 (without it, as GB18030).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from app.i18n import gettext
from app.money import fen_to_yuan_str
from app.tariffs import CHINA_TZ

TEXT, YUAN, KWH, COUNT, TIME, DATE = "text", "yuan", "kwh", "count", "time", "date"
YUAN_FORMAT = '#,##0.00"元"'
KWH_FORMAT = "#,##0.000"
COUNT_FORMAT = "0"
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
DATE_FORMAT = "yyyy-mm-dd"
SUMMED = (YUAN, KWH, COUNT)
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"
FORMATS = {"xlsx": XLSX_TYPE, "csv": CSV_TYPE}


@dataclass(frozen=True)
class Column:
    """A column: its header (zh, marked `N_`; translated when written), the kind of its values,
    its width in characters, and whether the totals row sums it."""

    header: str
    kind: str = TEXT
    width: int = 12
    total: bool = True


@dataclass
class Table:
    """A sheet: columns, rows (lists of values in the columns' kinds; None is an empty cell),
    and whether a totals row ends it (the sums of its money, energy and count columns)."""

    title: str
    columns: list[Column]
    rows: Iterable[list] = field(default_factory=list)
    totals: bool = True
    totals_label: str = "合计"


@dataclass
class Report:
    """What an export writes: its tables (the first is the CSV's), and the lines of the 说明
    sheet (what, which period, which buildings, who, when, notes)."""

    name: str  # the file's name, without extension
    tables: list[Table]
    about: list[tuple[str, str]] = field(default_factory=list)
    rows_written: int = 0


Progress = Callable[[int], None]  # rows written so far


def yuan_value(fen: int) -> Decimal:
    """The exact yuan of integer fen (1234 → Decimal("12.34")), for a number cell."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError(f"money must be integer fen, not {type(fen).__name__}")
    return Decimal(fen).scaleb(-2)


def kwh_value(wh: int) -> Decimal:
    if not isinstance(wh, int) or isinstance(wh, bool):
        raise TypeError(f"energy must be integer Wh, not {type(wh).__name__}")
    return Decimal(wh).scaleb(-3)


def _local(value):
    if isinstance(value, dt.datetime):
        return value.astimezone(CHINA_TZ).replace(tzinfo=None)
    return value


def _sums(table: Table) -> tuple[list, Callable[[list], None]]:
    sums = [0 if c.kind in SUMMED and c.total else None for c in table.columns]

    def add(row: list) -> None:
        for i, value in enumerate(row):
            if sums[i] is not None and value is not None:
                sums[i] += value
    return sums, add


def write_xlsx(report: Report, out, progress: Progress | None = None) -> int:
    """Write `report` as a workbook to the binary file `out`; returns the data rows of its
    first table (the one a CSV would hold)."""
    book = Workbook(write_only=True)
    bold = Font(bold=True)
    written, first = 0, None
    for table in report.tables:
        ws = book.create_sheet(gettext(table.title)[:31])
        ws.freeze_panes = "A2"
        for i, column in enumerate(table.columns, start=1):
            ws.column_dimensions[get_column_letter(i)].width = column.width
        header = []
        for column in table.columns:
            cell = WriteOnlyCell(ws, value=gettext(column.header))
            cell.font = bold
            cell.alignment = Alignment(wrap_text=True, vertical="top")
            header.append(cell)
        ws.append(header)
        sums, add = _sums(table)
        for row in table.rows:
            add(row)
            ws.append(_cells(ws, table.columns, row))
            written += 1
            if progress is not None and written % 500 == 0:
                progress(written)
        first = written if first is None else first
        if table.totals:
            totals = [gettext(table.totals_label)] + sums[1:]
            cells = []
            for cell in _cells(ws, table.columns, totals):
                if not hasattr(cell, "font"):
                    cell = WriteOnlyCell(ws, value=cell)
                cell.font = bold
                cells.append(cell)
            ws.append(cells)
    if report.about:
        ws = book.create_sheet(gettext("说明"))
        ws.column_dimensions["A"].width = 16
        ws.column_dimensions["B"].width = 80
        for key, value in report.about:
            ws.append([gettext(key), value])
    book.save(out)
    report.rows_written = first or 0
    if progress is not None:
        progress(written)
    return report.rows_written


def _cells(ws, columns: list[Column], row: list) -> list:
    cells = []
    for column, value in zip(columns, row):
        if value is None or column.kind == TEXT:
            cells.append(value)
            continue
        if column.kind == YUAN:
            cell = WriteOnlyCell(ws, value=yuan_value(value))
            cell.number_format = YUAN_FORMAT
        elif column.kind == KWH:
            cell = WriteOnlyCell(ws, value=kwh_value(value))
            cell.number_format = KWH_FORMAT
        elif column.kind == COUNT:
            cell = WriteOnlyCell(ws, value=value)
            cell.number_format = COUNT_FORMAT
        elif column.kind == TIME:
            cell = WriteOnlyCell(ws, value=_local(value))
            cell.number_format = TIME_FORMAT
        elif column.kind == DATE:
            cell = WriteOnlyCell(ws, value=value)
            cell.number_format = DATE_FORMAT
        else:
            cell = value
        cells.append(cell)
    return cells


def csv_text(column: Column, value) -> str:
    if value is None:
        return ""
    if column.kind == YUAN:
        return fen_to_yuan_str(value)
    if column.kind == KWH:
        return str(kwh_value(value))
    if column.kind == TIME:
        return _local(value).strftime("%Y-%m-%d %H:%M:%S")
    if column.kind == DATE:
        return value.isoformat()
    return str(value)


def write_csv(report: Report, out, progress: Progress | None = None) -> int:
    """Write the report's first table as CSV (UTF-8 with BOM, CRLF as Excel writes) to the
    binary file `out`; returns the data rows written."""
    table = report.tables[0]
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow([gettext(c.header) for c in table.columns])
    sums, add = _sums(table)
    written = 0
    for row in table.rows:
        add(row)
        writer.writerow([csv_text(c, v) for c, v in zip(table.columns, row)])
        written += 1
        if progress is not None and written % 500 == 0:
            progress(written)
    if table.totals:
        writer.writerow([gettext(table.totals_label)] + [
            csv_text(c, v) for c, v in zip(table.columns[1:], sums[1:])])
    text.flush()
    text.detach()
    report.rows_written = written
    if progress is not None:
        progress(written)
    return written


def write(report: Report, fmt: str, out, progress: Progress | None = None) -> int:
    if fmt == "xlsx":
        return write_xlsx(report, out, progress)
    if fmt == "csv":
        return write_csv(report, out, progress)
    raise ValueError(f"unknown format {fmt!r}")


def to_bytes(report: Report, fmt: str) -> bytes:
    buffer = io.BytesIO()
    write(report, fmt, buffer)
    return buffer.getvalue()
