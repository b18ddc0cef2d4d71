"""`python -m app.tariffs.quote --tariff T.json --usage U.json [--json]`: price a usage.

Prints the breakdown (kWh and price per tier and period) ending with the exact charge and the
charge in fen, or with `--json` the quote as JSON. Exit 2, with a message naming the field, on a
bad tariff or usage or a file that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.money import fen_to_yuan_str
from app.tariffs.model import Tariff, TariffError, Usage
from app.tariffs.pricing import Quote, format_kwh_fixed, format_yuan, quote_usage
from app.tariffs.schema import format_kwh, load_tariff, load_usage

PROG = "feikong quote"


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TariffError(f"cannot read the {what} file: {reason}") from exc


def _label(line) -> str:
    if line.tier is not None and line.period is not None:
        return f"tier {line.tier} {line.period}"
    if line.tier is not None:
        return f"tier {line.tier}"
    return line.period or "all"


def render(tariff: Tariff, usage: Usage, quote: Quote) -> str:
    """The human breakdown: one row per line, a total, the exact charge, the charge in fen."""
    head = f"{tariff.kind} tariff"
    if getattr(tariff, "cycle", None):
        head += f", {tariff.cycle}ly cycle; {format_kwh(usage.before_wh)} kWh used before"
    if usage.month is not None:
        head += f"; month {usage.month}"
    if usage.uplift_wh:
        head += f"; tier bounds raised by {format_kwh(usage.uplift_wh)} kWh"
    rows = [head]
    for line in quote.lines:
        rows.append(f"  {_label(line):<16}{format_kwh_fixed(line.energy_wh):>12} kWh × "
                    f"{line.price_yuan_per_kwh} 元/kWh = {format_yuan(line.amount_yuan):>14} 元")
    rows.append(f"  {'total':<16}{format_kwh_fixed(quote.energy_wh):>12} kWh"
                f"{'':>21}{format_yuan(quote.exact_yuan):>14} 元")
    rows.append(f"exact charge: {format_yuan(quote.exact_yuan)} 元")
    rows.append(f"charge: {quote.charge_fen} fen ({fen_to_yuan_str(quote.charge_fen)} 元)")
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options, for this module's `main` and for `feikong quote`."""
    parser.add_argument("--tariff", required=True, metavar="T.json", help="the tariff")
    parser.add_argument("--usage", required=True, metavar="U.json",
                        help='the usage, e.g. {"before_kwh": "0", "kwh": "300"}')
    parser.add_argument("--json", action="store_true", help="print the quote as JSON")


def run(args: argparse.Namespace) -> int:
    """Price `args.usage` with `args.tariff` and print it; 2 on bad input, 0 otherwise."""
    try:
        try:
            tariff = load_tariff(_read(args.tariff, "tariff"))
        except TariffError as exc:
            raise TariffError(f"{args.tariff}: {exc}") from exc
        try:
            usage = load_usage(_read(args.usage, "usage"))
            quote = quote_usage(tariff, usage)
        except TariffError as exc:
            raise TariffError(f"{args.usage}: {exc}") from exc
    except TariffError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(quote.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(render(tariff, usage, quote))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Price a usage with a tariff "
                                     "(the JSON forms are in docs/tariffs.md).")
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help exits 0, a usage error 2
        return int(exc.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
