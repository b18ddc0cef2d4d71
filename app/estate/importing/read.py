"""Reading an estate file into rows: an XLSX workbook (python-calamine) or a CSV file, which
holds one sheet recognised by its headers.

XLSX is read by python-calamine (Rust's calamine): the 10,000-account workbook of
`bench.import_export` (620 KB) reads in 0.25–0.5 s where openpyxl's read-only mode takes
2.3–3.4 s, the same rows (about 7× faster; `read_10k_s` and `read_openpyxl_10k_s` of the bench,
on this 2-core machine idle and shared), and reading was half of the dry run's time.
openpyxl stays the reference: calamine gives a cell as openpyxl did (numbers and texts the
same; tests/importing/test_read_cells.py) except in a few corners, and a workbook that has one
is read by openpyxl, whole, so that every check accepts and refuses exactly what it did
(`_needs_openpyxl`): an error value (#N/A: calamine gives an empty cell, openpyxl its text,
which a check refuses), a date (calamine gives 2024-01-05 for a date cell, openpyxl
2024-01-05T00:00:00, and each has its own idea of which number formats are dates), an escaped
character in a text (_x000D_, which calamine unescapes and openpyxl keeps), an integer written
with more digits than a float holds, a number written nan or inf. Such cells are rare in an
estate's sheets (none is a date) and never in the template's. A workbook calamine cannot
read at all goes to openpyxl too, which reads it or says why not.

A CSV's encoding is detected, never asked: a UTF-8 BOM is dropped; the bytes are decoded as
strict UTF-8, and when that fails as GB18030 (what Excel in mainland China writes when it saves
"CSV (逗号分隔)"); a file that is neither is refused.

A numeric cell comes as int or float. A float is turned straight back into the shortest
decimal text that reads as the same float (`repr`), which is the number as the sheet holds it:
amounts are then parsed from that text, exactly, and no float ever reaches money."""

from __future__ import annotations

import csv
import datetime as dt
import io
import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from xml.etree import ElementTree

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
    cells: dict[str, str]  # column key → the cell as text, stripped (an empty cell: absent)


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
        if value.is_integer() and abs(value) < 2 ** 53:
            return str(int(value))  # as below, sooner (calamine gives every number a float)
        exact = Decimal(repr(value))
        if not exact.is_finite():
            return repr(value)  # inf, nan: what a writer made of a number beyond a float
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


def _rows(columns: list[Column | None], values, first_row: int, text=None) -> list[Row]:
    text = text or cell_text
    read = [(index, column.key) for index, column in enumerate(columns) if column is not None]
    rows = []
    for number, raw in enumerate(values, start=first_row):
        width = len(raw)
        cells = {}
        for index, key in read:
            if index < width:
                value = text(raw[index])
                if value:
                    cells[key] = value
        if cells:
            rows.append(Row(number, cells))
    return rows


# What reading a damaged workbook raises: zipfile's errors (a compression method it does not
# know: NotImplementedError; an encrypted member: RuntimeError), the XML parser's (ElementTree's
# ParseError is a SyntaxError), and the readers' own on what they do not find.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError,
            KeyError, ValueError, TypeError, SyntaxError)


def _unreadable(exc: BaseException) -> FileRefused:
    return FileRefused([Problem("", None, "", N_(
        "无法读取这个 Excel 文件（{reason}）：请确认是 .xlsx 格式"), {"reason": exc})])


def _sheets(named_rows, text=cell_text) -> tuple[dict[str, SheetRows], list[Problem]]:
    """The recognised sheets of a workbook given as (title, its rows of cell values) in the
    workbook's order, and the problems of their headers; `text` gives a cell as text."""
    sheets: dict[str, SheetRows] = {}
    problems: list[Problem] = []
    for title, values in named_rows:
        values = iter(values)
        header_row = next(values, None)
        headers = [text(v) for v in header_row or ()]
        sheet = _recognise(headers, title)
        if sheet is None:
            continue  # 说明, or a sheet of the manager's own
        if sheet.key in sheets:
            problems.append(Problem(title, None, "", N_(
                "与「{other}」表重复：每种表只能有一张"), {"other": sheets[sheet.key].sheet.title}))
            continue
        columns = _columns(sheet, headers, problems)
        sheets[sheet.key] = SheetRows(sheet, _rows(columns, values, 2, text))
    if not sheets:
        raise FileRefused([Problem("", None, "", N_(
            "文件中没有可导入的表：表名应为 楼栋、网关、电表 或 账户（请从模板开始填写）"))])
    return sheets, problems


def _read_xlsx(data: bytes) -> tuple[dict[str, SheetRows], list[Problem]]:
    from python_calamine import CalamineError

    # A workbook calamine cannot read (damaged, or not laid out as it expects) is given to
    # openpyxl, which reads it or says what is wrong, as before.
    try:
        grids = None if _needs_openpyxl(data) else _calamine_grids(data)
    except (CalamineError, *_DAMAGED):
        grids = None
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":  # calamine gave up on it (a Rust panic)
            raise
        grids = None
    if grids is not None:
        try:
            return _sheets(grids, _calamine_text)
        except _OpenpyxlReads:
            pass
    return _read_xlsx_openpyxl(data)


class _OpenpyxlReads(Exception):
    """A cell calamine reads otherwise than openpyxl (a date, a time, a duration)."""


def _calamine_grids(data: bytes) -> list[tuple[str, list[list]]]:
    """Each worksheet's title and cells, from A1 (not from the first cell filled, so that rows
    keep their numbers). Chart sheets are left out, as openpyxl's `worksheets` does."""
    from python_calamine import CalamineWorkbook, SheetTypeEnum

    with CalamineWorkbook.from_filelike(io.BytesIO(data)) as book:
        return [(meta.name, book.get_sheet_by_name(meta.name).to_python(skip_empty_area=False))
                for meta in book.sheets_metadata if meta.typ == SheetTypeEnum.WorkSheet]


def _calamine_text(value) -> str:
    """`cell_text` of what calamine gives (an empty cell: "")."""
    kind = value.__class__
    if kind is str:
        return value.strip()
    if kind is float and value.is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        raise _OpenpyxlReads()
    return cell_text(value)


# What openpyxl reads otherwise than calamine, found in the workbook's XML (a false alarm only
# costs the speed): an error value or an ISO date (t="e", t="d"); an escaped character
# (_x000D_, which calamine unescapes; openpyxl also drops "x005F_"); an integer beyond a
# float's 53 bits (exact to openpyxl, rounded by calamine); a number written nan or inf (a
# float to calamine, a file openpyxl cannot read). A cell in a date or time style is found by
# its style number (`_date_styles`). Searched one by one: an alternation of them is several
# times slower. (A number calamine cannot parse, " 1.5" or "1_000", fails its reading:
# openpyxl then reads the file.)
_DIFFERENT = (re.compile(rb"""t\s*=\s*["'][ed]["']"""), re.compile(rb"_x[0-9A-Fa-f]{4}_"),
              re.compile(rb"x005F_"), re.compile(rb"v>\s*[-+]?(?:nan|inf)", re.IGNORECASE))
_LONG_INTEGER = re.compile(rb"v>\s*([-+]?\d{16,})\s*<")
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"


def _needs_openpyxl(data: bytes) -> bool:
    """Whether the workbook holds a cell that calamine reads otherwise than openpyxl (see the
    module's docstring), or is not laid out as calamine reads an .xlsx (then openpyxl reads
    it, or says what is wrong)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        rels = "xl/_rels/workbook.xml.rels"
        if not {"[Content_Types].xml", "xl/workbook.xml", rels} <= names:
            return True
        parts = []
        for rel in ElementTree.fromstring(archive.read(rels)).iter(_RELS):
            kind, target = rel.get("Type", ""), rel.get("Target", "")
            part = target[1:] if target.startswith("/") else \
                posixpath.normpath(posixpath.join("xl", target))
            if kind.endswith("/worksheet") or kind.endswith("/sharedStrings"):
                if part not in names or (kind.endswith("/sharedStrings")
                                         and part != "xl/sharedStrings.xml"):
                    return True  # where calamine would not look
                parts.append(part)
        styles = _date_styles(archive, names)
        if 0 in styles:
            return True  # a cell without a style is in a date style
        dated = re.compile(rb"""s\s*=\s*["'](?:%s)["']""" % "|".join(
            str(n) for n in sorted(styles)).encode()) if styles else None
        for part in parts:
            xml = archive.read(part)
            if any(p.search(xml) for p in _DIFFERENT) or (
                    dated and part != "xl/sharedStrings.xml" and dated.search(xml)):
                return True
            if any(float(n) != int(n) for n in _LONG_INTEGER.findall(xml)):
                return True  # beyond a float's 53 bits (compared exactly)
    return False


def _date_styles(archive: zipfile.ZipFile, names: set[str]) -> set[int]:
    """The cell styles (their numbers, a cell's s="…") that openpyxl reads as a date, a time
    or a duration: as openpyxl finds them (`openpyxl.styles.stylesheet.apply_stylesheet`)."""
    from openpyxl.styles.stylesheet import Stylesheet

    if "xl/styles.xml" not in names:
        return set()
    stylesheet = Stylesheet.from_tree(ElementTree.fromstring(archive.read("xl/styles.xml")))
    if not stylesheet.cell_styles:
        return set()
    return set(stylesheet.date_formats) | set(stylesheet.timedelta_formats)


def _read_xlsx_openpyxl(data: bytes) -> tuple[dict[str, SheetRows], list[Problem]]:
    """The workbook read by openpyxl (read-only: rows streamed)."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except _DAMAGED as exc:
        raise _unreadable(exc) from exc

    def named_rows():
        for ws in book.worksheets:
            ws.reset_dimensions()  # some writers declare A1:A1; read what is there
            yield ws.title, ws.iter_rows(values_only=True)

    try:
        return _sheets(named_rows())
    except _DAMAGED as exc:
        raise _unreadable(exc) from exc
    finally:
        book.close()


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
        rows = _rows(columns, reader, 2)
    except csv.Error as exc:
        raise FileRefused([Problem(sheet.title, None, "", N_("CSV 格式有误：{reason}"),
                                   {"reason": exc})]) from exc
    return {sheet.key: SheetRows(sheet, rows)}, problems
