"""The empty estate workbook a manager fills in (`feikong import --template FILE.xlsx`, the
console's download): the four sheets with their headers (required ones in dark red), a Chinese
note on every header (a cell comment), a drop-down list on every fixed-value column, text format
where digits must stay as typed (户号, phones), the header row frozen, and a 说明 sheet."""

from __future__ import annotations

import io

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from app.estate.importing.spec import SHEETS, Sheet

LAST_ROW = 1_048_576  # the validations and text format cover the whole column
HEADER_FILL = PatternFill("solid", fgColor="FFE8EEF7")
REQUIRED_FONT = Font(bold=True, color="FF9C0006")
OPTIONAL_FONT = Font(bold=True)

GUIDE = """\
导入说明
1. 一个工作簿描述一个小区：楼栋、网关、电表、账户四张表，可以只填其中几张（所引用的楼栋、网关须已在系统中）。
2. 第一行是列名，不要修改；鼠标停在列名上可以看到填写说明。列名带深红色的是必填列。
3. 导入前会检查每一行；只要有一处错误，就什么都不导入，并按「表、行、列」列出全部错误。
4. 同一个文件再次导入不会产生任何变化：楼栋按名称、网关按名称、电表按网关和表地址、账户按户号识别。
   修改了某一行再导入，只更新这一项，并记入操作记录；留空的可选列保持系统中原有的值。
5. 期初余额只在新开户时记入账本；已有账户的余额请在控制台调账。
6. 也可以导入单张表的 CSV 文件（UTF-8 或 Excel 保存的 GB18030 编码均可），按第一行的列名识别是哪张表。
详见 docs/import.md。
"""


def template_sheet(book: Workbook, sheet: Sheet):
    ws = book.create_sheet(sheet.title)
    for index, column in enumerate(sheet.columns, start=1):
        cell = ws.cell(row=1, column=index, value=column.header)
        cell.font = REQUIRED_FONT if column.required else OPTIONAL_FONT
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(vertical="center")
        cell.comment = Comment(column.note, "费控")
        cell.comment.width, cell.comment.height = 320, 140
        letter = get_column_letter(index)
        ws.column_dimensions[letter].width = max(column.width, len(column.header) * 2 + 2)
        if column.choices:
            validation = DataValidation(
                type="list", formula1='"' + ",".join(column.choices) + '"', allow_blank=True,
                showErrorMessage=True, errorTitle="请从列表中选择",
                error="可选：" + "、".join(column.choices))
            validation.add(f"{letter}2:{letter}{LAST_ROW}")
            ws.add_data_validation(validation)
        if column.text:
            ws.column_dimensions[letter].number_format = "@"
    ws.freeze_panes = "A2"
    return ws


def template_workbook() -> Workbook:
    book = Workbook()
    book.remove(book.active)
    for sheet in SHEETS:
        template_sheet(book, sheet)
    guide = book.create_sheet("说明")
    for number, line in enumerate(GUIDE.splitlines(), start=1):
        guide.cell(row=number, column=1, value=line)
    guide.column_dimensions["A"].width = 110
    return book


def template_bytes() -> bytes:
    buffer = io.BytesIO()
    template_workbook().save(buffer)
    return buffer.getvalue()
