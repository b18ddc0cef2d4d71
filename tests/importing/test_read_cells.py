"""XLSX is read by python-calamine, and every cell comes out as openpyxl gave it, so that each
check accepts and refuses what it did: numbers (amounts, 户号 and phones typed as numbers, unit
addresses), texts, booleans, empty cells, row numbers. A workbook holding a cell calamine reads
otherwise (an error value, a date, an escaped character, ...) is read by openpyxl. A damaged or
foreign file is refused with a plain message, never a traceback."""

from __future__ import annotations

import datetime as dt
import io
import random
import re
import struct
import zipfile
from decimal import Decimal

import pytest
from openpyxl import Workbook
from sqlmodel import select

from app.db import transaction
from app.estate.importing import import_file
from app.estate.importing.read import (FileRefused, _calamine_grids, _calamine_text,
                                       _needs_openpyxl, _read_xlsx_openpyxl, _sheets, read_file)
from app.estate.importing.spec import ACCOUNTS
from app.estate.models import Account
from app.ledger.models import OPENING, LedgerEntry
from tests.importing.conftest import small_estate, table_counts, workbook

HEADERS = [c.header for c in ACCOUNTS.columns]

# Every kind of value a manager's workbook holds in a cell, typed as Excel types it.
VALUES = [
    0, 1, -1, 502, 247, 13812345678, 8613812345678, 571_88886666, 2 ** 53 - 1, -(2 ** 53 - 1),
    0.0, -0.0, 1.0, 12.5, 0.1 + 0.2, 0.5583, 89.5, 100.10, -20.0, -0.01, 12345.678, 12.345,
    3.14159265358979, 1e15 + 0.3, 2.0 ** 53, 2.0 ** 60, 1e20, 1.5e-7, 1.0000000000000002,
    13812345678.0, 99999.99, -99999.99, 1e-300, 1.7976931348623157e308,
    True, False,
    "", " ", "  text ", "0012", "１２３", "是", "否", "居民", "1-2-301", "a\nb", "tab\there",
    "0571-88886666", "+86 138 1234 5678", "12.50", "1,000", "张三", "𠮷野家", "<&>\"'",
]


def numbers(seed: int = 16, count: int = 3000) -> list:
    """Numbers of every shape an estate's columns take: amounts in 元 (up to two decimals, and
    some finer), areas, prices, unit addresses, phones, and arbitrary floats."""
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        shape = rng.randrange(7)
        if shape == 0:
            found.append(rng.randrange(-10 ** 7, 10 ** 7) / 100)  # 元 with fen
        elif shape == 1:
            found.append(rng.randrange(-10 ** 8, 10 ** 8) / 1000)  # finer than a fen
        elif shape == 2:
            found.append(rng.randrange(10 ** 6) / 10 ** rng.randrange(5))  # areas, prices
        elif shape == 3:
            found.append(rng.randrange(1, 248))
        elif shape == 4:
            found.append(int(f"1{rng.randrange(3, 10)}{rng.randrange(10 ** 9):09d}"))
        elif shape == 5:
            found.append(rng.random() * 10 ** rng.randrange(-8, 18))
        else:
            found.append(float(rng.randrange(-10 ** 15, 10 ** 15)))
    return found


def accounts_book(cells: list, width: int = len(HEADERS)) -> bytes:
    """An 账户 sheet with the template's headers, `cells` laid in rows of `width`; an empty
    row in the middle and a 说明 sheet, as a manager's file has."""
    book = Workbook()
    ws = book.active
    ws.title = "账户"
    ws.append(HEADERS)
    for start in range(0, len(cells), width):
        if start == width * 3:
            ws.append([])
        ws.append(cells[start:start + width])
    book.create_sheet("说明").append(["导入说明"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


INLINE = re.compile(rb'(<c r="[A-Z]+[0-9]+"(?: s="[0-9]+")?) t="inlineStr"><is><t[^>]*>(.*?)</t>'
                    rb'</is></c>', re.DOTALL)


def with_shared_strings(data: bytes) -> bytes:
    """The workbook with its texts in a shared-strings table, as Excel writes them (openpyxl
    writes each text in its cell)."""
    texts: dict[bytes, int] = {}

    def shared(match) -> bytes:
        index = texts.setdefault(match.group(2), len(texts))
        return match.group(1) + b' t="s"><v>%d</v></c>' % index

    source = zipfile.ZipFile(io.BytesIO(data))
    parts = {name: source.read(name) for name in source.namelist()}
    for name in [n for n in parts if n.startswith("xl/worksheets/")]:
        parts[name] = INLINE.sub(shared, parts[name])
    parts["xl/sharedStrings.xml"] = (
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="%d" '
        b'uniqueCount="%d">' % (len(texts), len(texts))
        + b"".join(b'<si><t xml:space="preserve">%s</t></si>' % t for t in texts) + b"</sst>")
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(b"</Types>", (
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'))
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>", b'<Relationship Id="rIdShared" Type="http://schemas.openxmlformats'
        b'.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
        b"</Relationships>")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for name, content in parts.items():
            out.writestr(name, content)
    return buffer.getvalue()


def rows(sheets) -> dict:
    return {key: [(row.number, row.cells) for row in found.rows] for key, found in sheets.items()}


def by_calamine(data: bytes) -> dict:
    sheets, problems = _sheets(_calamine_grids(data), _calamine_text)
    return rows(sheets)


def by_openpyxl(data: bytes) -> dict:
    sheets, problems = _read_xlsx_openpyxl(data)
    return rows(sheets)


@pytest.mark.parametrize("shared", [False, True], ids=["texts in cells", "shared strings"])
def test_calamine_gives_every_cell_as_openpyxl_did(shared):
    data = accounts_book(VALUES + numbers())
    if shared:
        data = with_shared_strings(data)
        assert b"<si>" in zipfile.ZipFile(io.BytesIO(data)).read("xl/sharedStrings.xml")
    assert not _needs_openpyxl(data)  # read by calamine
    calamine = by_calamine(data)
    assert calamine == by_openpyxl(data)
    assert rows(read_file(data)[0]) == calamine
    accounts = dict(calamine["accounts"])
    assert len(accounts) == -(-(len(VALUES) + 3000) // len(HEADERS))  # every row
    assert [n for n in accounts if n < 7] == [2, 3, 4, 6]  # row 5 is empty; rows keep numbers
    first, second, third = accounts[2], accounts[3], accounts[4]
    assert (first["number"], first["building"], first["household"]) == ("0", "1", "-1")
    assert first["floor_area"] == "13812345678"  # a phone typed as a number: its digits
    assert (first["tariff"], first["care"], first["cut_below"]) == \
        ("9007199254740991", "12.5", "0.5583")
    assert (second["number"], second["building"], second["price"]) == ("-20", "-0.01",
                                                                      "0.00000015")
    assert (second["restore_above"], second["emergency"]) == ("是", "否")  # TRUE, FALSE
    assert "number" not in third and "building" not in third  # "" and " ": empty cells
    assert (third["household"], third["holder_name"]) == ("text", "0012")


def patched(data: bytes, part: str, old: bytes, new: bytes) -> bytes:
    """The workbook with `old` replaced by `new` in one part's XML, as another writer puts it."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for name in source.namelist():
            xml = source.read(name)
            if name == part:
                assert old in xml
                xml = xml.replace(old, new, 1)
            out.writestr(name, xml)
    return buffer.getvalue()


def one_row(**cells) -> bytes:
    """The template filled with an estate of one household, its account's cells as given."""
    rows_ = small_estate(1, 1)
    rows_["accounts"][0] |= cells
    return workbook(rows_)


def styled(value, number_format: str) -> bytes:
    book = Workbook()
    ws = book.active
    ws.title = "账户"
    ws.append(HEADERS)
    ws.append(["1001", "1号楼", value, None, None, None, None, None, None, 0.5583])
    ws["C2"].number_format = number_format
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


SHEET = "xl/worksheets/sheet4.xml"  # the template's 账户
OTHERWISE = {
    # an error value: openpyxl gives its text, calamine an empty cell (no opening balance!)
    "error value": lambda: one_row(opening="#DIV/0!"),
    "date": lambda: styled(dt.datetime(2024, 1, 5), "yyyy-mm-dd"),
    "time": lambda: styled(dt.time(8, 30), "h:mm"),
    "number in a date style": lambda: styled(45000, 'yyyy"年"m"月"d"日"'),
    "duration": lambda: styled(1.25, "[h]:mm"),
    "ISO date": lambda: patched(styled("2024-01-05", "@"), "xl/worksheets/sheet1.xml",
                                b't="inlineStr"><is><t>2024-01-05</t></is>',
                                b't="d"><v>2024-01-05</v>'),
    "escaped character": lambda: one_row(household="1-1-001_x000D_"),
    "long integer": lambda: patched(one_row(number=1234567), SHEET, b"<v>1234567</v>",
                                    b"<v>12345678901234567890</v>"),
    "integer beyond a float": lambda: patched(one_row(number=1234567), SHEET,
                                              b"<v>1234567</v>", b"<v>" + b"9" * 400 + b"</v>"),
    "nan": lambda: patched(one_row(opening=1234567), SHEET, b"<v>1234567</v>", b"<v>nan</v>"),
    "number with spaces": lambda: patched(one_row(opening=1234567), SHEET,
                                          b"<v>1234567</v>", b"<v> 12.50 </v>"),
}


def outcome(read, data: bytes):
    """The rows read, or the message the file is refused with."""
    try:
        return read(data)
    except FileRefused as exc:
        return [p.text() for p in exc.problems]


@pytest.mark.parametrize("case", OTHERWISE)
def test_a_cell_calamine_reads_otherwise_sends_the_workbook_to_openpyxl(case):
    data = OTHERWISE[case]()
    try:
        alone = by_calamine(data)
    except Exception:  # noqa: BLE001
        alone = None  # calamine alone: a date it would give otherwise, or no reading at all
    before = outcome(by_openpyxl, data)
    assert alone != before  # what the guard is for
    assert outcome(lambda d: rows(read_file(d)[0]), data) == before


@pytest.mark.parametrize("written", [b"00\r1", b"00\r\n1", b"00&#13;1"])
def test_line_ends_in_the_xml_read_alike(written):
    """An XML parser turns a carriage return into a line feed; calamine does too."""
    data = patched(one_row(household="1-1-001X"), SHEET, b"001X", written)
    assert not _needs_openpyxl(data)
    assert by_calamine(data) == by_openpyxl(data)
    assert rows(read_file(data)[0])["accounts"][0][1]["household"] == \
        "1-1-00" + ("\r" if b"&#13;" in written else "\n") + "1"


def test_what_openpyxl_gave_for_those_cells_is_what_the_checks_see(engine, estate_id):
    with transaction(engine) as s:
        texts = [p.text() for p in import_file(s, OTHERWISE["error value"](),
                                               estate_id=estate_id).problems]
    assert texts == ["「账户」表第 2 行「期初余额（元）」：应为金额（元），最多两位小数，可为负数"]
    assert set(table_counts(engine).values()) == {0}
    sheets, _ = read_file(OTHERWISE["date"]())
    assert sheets["accounts"].rows[0].cells["household"] == "2024-01-05T00:00:00"


def test_numbers_typed_as_numbers_import_as_their_digits(engine, estate_id):
    """A manager who types 户号, phones, amounts, unit addresses and areas as numbers, and 是 as
    TRUE: each read as the digits the sheet shows, and imported."""
    rows_ = small_estate(1, 2)
    rows_["accounts"][0] |= {"number": 1001, "phone": 13812345678, "opening": 12.5,
                             "floor_area": 89.5, "unit": 1.0, "price": 0.5583, "care": True,
                             "low_balance": 10, "cut_below": -5.25, "restore_above": 0}
    rows_["accounts"][1] |= {"number": 1002, "phone": 57188886666, "opening": -0.01,
                             "care": False, "uplift": False}
    data = workbook(rows_)
    assert not _needs_openpyxl(data)
    with transaction(engine) as s:
        result = import_file(s, data, estate_id=estate_id)
    assert [p.text() for p in result.problems] == [
        "「账户」表第 3 行「联系电话」：不是有效的电话号码：应为 11 位手机号或带区号的固定电话"
        "（例如 0571-88886666）"]  # a landline typed as a number loses its 0
    rows_["accounts"][1]["phone"] = "0571-88886666"
    with transaction(engine) as s:
        result = import_file(s, workbook(rows_), estate_id=estate_id)
    assert result.ok and result.written
    with transaction(engine, read_only=True) as s:
        first = s.exec(select(Account).where(Account.number == "1001")).one()
        second = s.exec(select(Account).where(Account.number == "1002")).one()
        openings = dict(s.execute(select(LedgerEntry.account_id, LedgerEntry.amount_fen)
                                  .where(LedgerEntry.kind == OPENING)).all())
    assert (first.holder_phone, first.floor_area_m2, first.care_list) == \
        ("13812345678", Decimal("89.5"), True)
    assert (first.low_balance_threshold_fen, first.cut_below_fen) == (1000, -525)
    assert (second.holder_phone, second.care_list, second.tariff_uplift) == \
        ("0571-88886666", False, False)
    assert openings == {first.id: 1250, second.id: -1}


WRONG_NUMBERS = {
    "amount finer than a fen": ({"opening": 12.345},
                                "「账户」表第 2 行「期初余额（元）」：应为金额（元），最多两位小数，可为负数"),
    "unit address not whole": ({"unit": 2.5}, "「账户」表第 2 行「表地址」：应为 1–247 的整数"),
    "unit address too far": ({"unit": 248.0}, "「账户」表第 2 行「表地址」：应为 1–247 的整数"),
    "phone too short": ({"phone": 1381234567},
                        "「账户」表第 2 行「联系电话」：不是有效的电话号码：应为 11 位手机号或带区号的"
                        "固定电话（例如 0571-88886666）"),
    "yes as a number": ({"care": 1}, "「账户」表第 2 行「爱心档案」：应为 是、否 之一"),
    "price not above zero": ({"price": -0.5583},
                             "「账户」表第 2 行「单一电价（元/千瓦时）」：应为大于 0 的电价（元/千瓦时），"
                             "最多四位小数，例如 0.5583"),
    "threshold as a float": ({"low_balance": 1e-7},
                             "「账户」表第 2 行「低余额提醒线（元）」：低余额提醒线应为金额（元），"
                             "最多两位小数，不能为负"),
}


@pytest.mark.parametrize("case", WRONG_NUMBERS)
def test_a_wrong_number_is_refused_with_its_message(engine, estate_id, case):
    cells, expected = WRONG_NUMBERS[case]
    rows_ = small_estate(1, 1)
    rows_["accounts"][0] |= cells
    data = workbook(rows_)
    assert not _needs_openpyxl(data)
    with transaction(engine) as s:
        result = import_file(s, data, estate_id=estate_id)
    assert [p.text() for p in result.problems] == [expected]
    assert set(table_counts(engine).values()) == {0}


def _compression_unknown(data: bytes, part: str = SHEET) -> bytes:
    """The workbook with one part's compression method (in its local header and the central
    directory) set to one that no reader knows."""
    blob = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(part)
    struct.pack_into("<H", blob, info.header_offset + 8, 99)
    central = blob.find(b"PK\x01\x02")
    while central != -1:
        size = struct.unpack_from("<H", blob, central + 28)[0]
        if bytes(blob[central + 46:central + 46 + size]) == part.encode():
            struct.pack_into("<H", blob, central + 10, 99)
            return bytes(blob)
        central = blob.find(b"PK\x01\x02", central + 46)
    raise AssertionError(part)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, content in members.items():
            out.writestr(name, content)
    return buffer.getvalue()


DAMAGED = {
    "truncated": lambda: workbook(small_estate(1, 1))[:3000],
    "zip magic then garbage": lambda: b"PK\x03\x04" + bytes(range(256)) * 8,
    "a zip of something else": lambda: _zip({"readme.txt": b"hello"}),
    "an OpenDocument spreadsheet": lambda: _zip({
        "mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
        "content.xml": b"<office:document-content/>"}),
    "broken sheet XML": lambda: patched(workbook(small_estate(1, 1)), SHEET, b"</sheetData>",
                                        b"</sheetDat"),
    "broken workbook XML": lambda: patched(workbook(small_estate(1, 1)), "xl/workbook.xml",
                                           b"<sheets>", b"<sheets"),
    "unknown compression": lambda: _compression_unknown(workbook(small_estate(1, 1))),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_or_foreign_file_is_refused_plainly(engine, estate_id, case):
    data = DAMAGED[case]()
    with transaction(engine) as s:
        result = import_file(s, data, estate_id=estate_id)
    assert len(result.problems) == 1 and not result.written
    text = result.problems[0].text()
    assert text.startswith("无法读取这个 Excel 文件（") and text.endswith("）：请确认是 .xlsx 格式")
    assert set(table_counts(engine).values()) == {0}
