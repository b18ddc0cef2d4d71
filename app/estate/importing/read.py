"""Reading an estate file into rows: an XLSX workbook (openpyxl, read-only: rows streamed,
never the whole sheet in memory) or a CSV file, which holds one sheet recognised by its headers.

A CSV's encoding is detected, never asked: a UTF-8 BOM is dropped; the bytes are decoded as
strict UTF-8, and when that fails as GB18030 (what Excel in mainland China writes when it saves
"CSV (逗号分隔)"); a file that is neither is refused.

openpyxl gives a numeric cell as int or float. A float is turned straight back into the shortest
decimal text that reads as the same float (`repr`), which is the number as the sheet holds it:
amounts are then parsed from that text, exactly, and no float ever reaches money."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal

from app.estate.importing.spec import SHEETS, SHEETS_BY_TITLE, Column, Sheet, fold, header_map
from app.i18n import N_


@dataclass
class Problem:
    """One thing wrong in a file: where (sheet title, row number as the spreadsheet shows it,
    column header; any may be empty) and what (a message template, marked for translation,
    and its parameters)."""

    sheet: str
    row: int | None
    column: str
    message: str
    params: dict = field(default_factory=dict)

    def what(self) -> str:
        from app.i18n import gettext

        return gettext(self.message).format(**self.params)

    def text(self) -> str:
        from app.i18n import gettext

        where = ""
        if self.sheet and self.row and self.column:
            where = gettext(N_("「{sheet}」表第 {row} 行「{column}」：")).format(
                sheet=self.sheet, row=self.row, column=self.column)
        elif self.sheet and self.row:
            where = gettext(N_("「{sheet}」表第 {row} 行：")).format(sheet=self.sheet, row=self.row)
        elif self.sheet and self.column:
            where = gettext(N_("「{sheet}」表「{column}」列：")).format(
                sheet=self.sheet, column=self.column)
        elif self.sheet:
            where = gettext(N_("「{sheet}」表：")).format(sheet=self.sheet)
        return where + self.what()


@dataclass
class Row:
    number: int  # as the spreadsheet numbers it (the header is row 1)
    cells: dict[str, str]  # column key → the cell as text, stripped ("" when empty)


@dataclass
class SheetRows:
    sheet: Sheet
    rows: list[Row]


class FileRefused(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.text() for p in problems))
        self.problems = problems


XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # the old binary .xls


def read_file(data: bytes) -> tuple[dict[str, SheetRows], list[Problem]]:
    """The file's sheets by key, and the problems found reading them (unknown or missing
    headers, a sheet twice). Raises FileRefused when the file cannot be read at all."""
    if data.startswith(OLE_MAGIC):
        raise FileRefused([Problem("", None, "", N_(
            "这是旧版 Excel（.xls）文件：请在 Excel 中另存为 .xlsx 或 CSV 后再导入"))])
    if data.startswith(XLSX_MAGIC):
        return _read_xlsx(data)
    return _read_csv(data)


def cell_text(value) -> str:
    """A cell as text: numbers as the sheet shows them (no float artefacts: 12.5 not
    12.500000001, 13812345678 not 1.38e10), True/False as 是/否, dates as ISO."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        exact = Decimal(repr(value))
        if exact == exact.to_integral_value():
            return str(int(exact))
        return format(exact, "f")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value).strip()


def _recognise(headers: list[str], title: str | None) -> Sheet | None:
    if title is not None and fold(title) in {fold(t) for t in SHEETS_BY_TITLE}:
        return next(s for s in SHEETS if fold(s.title) == fold(title))
    folded = {fold(h) for h in headers if h}
    best = None
    for sheet in SHEETS:
        known = header_map(sheet)
        required = {fold(c.header) for c in sheet.columns if c.required}
        if required <= folded and folded <= set(known):
            if best is None or len(sheet.columns) < len(best.columns):
                best = sheet
    if best is None:  # else the sheet with clearly the most headers in common
        scored = sorted(((len(folded & set(header_map(s))), s.key) for s in SHEETS), reverse=True)
        if scored[0][0] >= 2 and scored[0][0] > scored[1][0]:
            best = next(s for s in SHEETS if s.key == scored[0][1])
    return best


def _columns(sheet: Sheet, headers: list[str], problems: list[Problem]) -> list[Column | None]:
    known = header_map(sheet)
    found: list[Column | None] = []
    seen: set[str] = set()
    for header in headers:
        key = fold(header) if header else ""
        column = known.get(key)
        if header and column is None:
            problems.append(Problem(sheet.title, 1, header, N_(
                "不认识的列名；可用的列：{columns}"), {
                "columns": "、".join(c.header for c in sheet.columns)}))
        elif column is not None and column.key in seen:
            problems.append(Problem(sheet.title, 1, header, N_("这一列重复出现")))
            column = None
        if column is not None:
            seen.add(column.key)
        found.append(column)
    for column in sheet.columns:
        if column.required and column.key not in seen:
            problems.append(Problem(sheet.title, None, column.header, N_("缺少必填列")))
    return found


def _rows(sheet: Sheet, columns: list[Column | None], values, first_row: int) -> list[Row]:
    rows = []
    for number, raw in enumerate(values, start=first_row):
        cells = {}
        for column, value in zip(columns, raw):
            if column is not None:
                cells[column.key] = cell_text(value)
        if any(cells.values()):
            rows.append(Row(number, cells))
    return rows


def _read_xlsx(data: bytes) -> tuple[dict[str, SheetRows], list[Problem]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise FileRefused([Problem("", None, "", N_(
            "无法读取这个 Excel 文件（{reason}）：请确认是 .xlsx 格式"), {"reason": exc})]) from exc
    sheets: dict[str, SheetRows] = {}
    problems: list[Problem] = []
    try:
        for ws in book.worksheets:
            ws.reset_dimensions()  # some writers declare A1:A1; read what is there
            values = ws.iter_rows(values_only=True)
            header_row = next(values, None)
            headers = [cell_text(v) for v in header_row or ()]
            sheet = _recognise(headers, ws.title)
            if sheet is None:
                continue  # 说明, or a sheet of the manager's own
            if sheet.key in sheets:
                problems.append(Problem(ws.title, None, "", N_(
                    "与「{other}」表重复：每种表只能有一张"), {"other": sheets[sheet.key].sheet.title}))
                continue
            columns = _columns(sheet, headers, problems)
            sheets[sheet.key] = SheetRows(sheet, _rows(sheet, columns, values, 2))
    finally:
        book.close()
    if not sheets:
        raise FileRefused([Problem("", None, "", N_(
            "文件中没有可导入的表：表名应为 楼栋、网关、电表 或 账户（请从模板开始填写）"))])
    return sheets, problems


def decode_csv(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise FileRefused([Problem("", None, "", N_(
        "无法识别文件的编码：请在 Excel 中另存为 .xlsx，或 CSV UTF-8"))])


def _read_csv(data: bytes) -> tuple[dict[str, SheetRows], list[Problem]]:
    text = decode_csv(data)
    if "\x00" in text:
        raise FileRefused([Problem("", None, "", N_(
            "这不是 .xlsx 或 CSV 文件：请在 Excel 中另存为 .xlsx 或 CSV 后再导入"))])
    reader = csv.reader(io.StringIO(text, newline=""))
    headers = [h.strip() for h in next(reader, [])]
    sheet = _recognise(headers, None)
    if sheet is None:
        raise FileRefused([Problem("", None, "", N_(
            "认不出这个 CSV 是哪张表：第一行应是 楼栋、网关、电表 或 账户 表的列名（见模板）"))])
    problems: list[Problem] = []
    columns = _columns(sheet, headers, problems)
    try:
        rows = _rows(sheet, columns, reader, 2)
    except csv.Error as exc:
        raise FileRefused([Problem(sheet.title, None, "", N_("CSV 格式有误：{reason}"),
                                   {"reason": exc})]) from exc
    return {sheet.key: SheetRows(sheet, rows)}, problems
