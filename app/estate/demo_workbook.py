"""The demo estate as a workbook: `app/estate/demo_estate.xlsx`, which `feikong demo` (and
`feikong seed`) import through the same path as any manager's file (`app.estate.importing`),
so the import runs every time anyone starts the demo. Written from the template by

    python -m app.estate.demo_workbook

3 buildings, 60 households on 3 gateways, one per meter protocol (`demo_households`: balances,
the cut household 101020 at −5.00 元, a few low ones): 1号楼 behind a Modbus TCP gateway, 2号楼
behind a serial server passing Modbus-RTU, 3号楼 behind one passing DL/T 645-2007 (its meters'
addresses are 12-digit 表号). The gateways' host and port in the file are the default
settings' (127.0.0.1:15020–15022); the seed replaces them with where the settings put the
simulator (`FEIKONG_SIM_HOST`, `FEIKONG_SIM_BASE_PORT`)."""

from __future__ import annotations

import io
import sys
from decimal import Decimal
from pathlib import Path

from app.estate.importing import template_workbook
from app.estate.importing.spec import ACCOUNTS, BUILDINGS, GATEWAYS
from app.money import fen_to_yuan_str

DEMO_WORKBOOK = Path(__file__).resolve().parent / "demo_estate.xlsx"
DEMO_HOST, DEMO_BASE_PORT = "127.0.0.1", 15020


SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
DEMO_PRICE = Decimal("0.5583")
CUT_ACCOUNT = "101020"  # building 1, the 20th household: cut, at -5.00 元
DEMO_GATEWAYS = 3
# Gateway g speaks DEMO_PROTOCOLS[g % 3] (meters.protocol.PROTOCOLS).
DEMO_PROTOCOLS = ("modbus_tcp", "modbus_rtu_over_tcp", "dlt645_tcp")
DLT645_FIRST = 202612000000  # a DL/T 645 gateway's meters: 表号 202612000001, …


def demo_protocol(g: int) -> str:
    return DEMO_PROTOCOLS[g % len(DEMO_PROTOCOLS)]


def demo_units(g: int, per_gateway: int = 20) -> list[int]:
    """The addresses of gateway g's meters: Modbus unit ids 1…N, or 12-digit DL/T 645 表号."""
    first = DLT645_FIRST if demo_protocol(g) == "dlt645_tcp" else 0
    return [first + n for n in range(1, per_gateway + 1)]


def demo_households(gateways: int = DEMO_GATEWAYS, per_gateway: int = 20):
    """(gateway index, meter address, account number, household, opening balance in fen, relay
    open)."""
    for g in range(gateways):
        for address in demo_units(g, per_gateway):
            unit = address % 1000
            number = f"1{g + 1:02d}{unit:03d}"
            floor, room = (unit - 1) // 4 + 1, (unit - 1) % 4 + 1
            household = f"{g + 1}-{floor}-{floor}0{room}"
            if number == CUT_ACCOUNT:
                balance, cut = -500, True
            elif unit % 7 == 3:
                balance, cut = 350 + unit * 10, False  # low
            else:
                balance, cut = 5_000 + unit * 731 % 20_000, False
            yield g, address, number, household, balance, cut


def gateway_name(g: int) -> str:
    return f"{g + 1}号楼集中器"


def demo_rows(gateways: int = DEMO_GATEWAYS, per_gateway: int = 20) -> dict[str, list[dict]]:
    """The demo's rows by sheet key, each a dict of column key → cell value."""
    buildings = [{"name": f"{g + 1}号楼", "floor_area": "2150", "share_scheme": "按面积",
                  "share_period": "按日", "common_price": "0.5583", "line_loss_pct": "5"}
                 for g in range(gateways)]
    gws = [{"name": gateway_name(g), "host": DEMO_HOST, "port": DEMO_BASE_PORT + g,
            "protocol": demo_protocol(g)} for g in range(gateways)]
    accounts = []
    for g, address, number, household, balance, _cut in demo_households(gateways, per_gateway):
        unit = address % 1000
        accounts.append({
            "number": number, "building": f"{g + 1}号楼", "household": household,
            "holder_name": SURNAMES[unit % len(SURNAMES)] + "先生",
            "phone": f"138{unit:04d}{g:04d}", "floor_area": str(Decimal(80 + unit % 5 * 10)),
            "gateway": gateway_name(g),
            "unit": f"{address:012d}" if demo_protocol(g) == "dlt645_tcp" else address,
            "price": str(DEMO_PRICE),
            "strategy": "居民", "opening": fen_to_yuan_str(balance), "care": "否"})
    return {"buildings": buildings, "gateways": gws, "meters": [], "accounts": accounts}


def demo_workbook_bytes(gateways: int = DEMO_GATEWAYS, per_gateway: int = 20) -> bytes:
    book = template_workbook()
    rows = demo_rows(gateways, per_gateway)
    for sheet in (BUILDINGS, GATEWAYS, ACCOUNTS):
        ws = book[sheet.title]
        keys = [c.key for c in sheet.columns]
        for number, row in enumerate(rows[sheet.key], start=2):
            for index, key in enumerate(keys, start=1):
                if key in row:
                    ws.cell(row=number, column=index, value=row[key])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target = Path(argv[0]) if argv else DEMO_WORKBOOK
    target.write_bytes(demo_workbook_bytes())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
