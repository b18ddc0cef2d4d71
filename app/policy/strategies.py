"""Strategies (收费策略) per customer type: how often a household is reminded, how its daily
rate is estimated, and whether an exhausted balance is cut by the system or handed to a person.

Thresholds and the overdraft stay on the account (`low_balance_threshold_fen`, `cut_below_fen`);
the rules that differ by customer type live here, in code, until managers need to edit them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.i18n import N_


@dataclass(frozen=True)
class Strategy:
    name: str
    label_zh: str
    notice_interval: dt.timedelta  # at most one low-balance notice of each kind per interval
    rate_days: int  # the recent daily rate: the charges of the last N complete local days / N
    automatic_cut: bool  # False: an exhausted balance becomes a manager task, never a command
    # True: a restore arms the relay (允许合闸) and the resident closes it with the meter's
    # button (the safe restore some estates require); False: the meter closes it directly.
    restore_close_allowed: bool = False


RESIDENTIAL = Strategy("residential", N_("居民"), dt.timedelta(hours=24), 7, True)
# The same, restored by the resident's button on the meter (按钮合闸).
RESIDENTIAL_BUTTON = Strategy("residential_button", N_("居民（按钮合闸）"), dt.timedelta(hours=24), 7,
                              True, restore_close_allowed=True)
SHOP = Strategy("shop", N_("商铺"), dt.timedelta(hours=24), 7, True)
# Lifts, pumps and corridor lights are not cut by a machine.
COMMON_AREA = Strategy("common_area", N_("公共区域"), dt.timedelta(hours=24), 7, False)

STRATEGIES = {s.name: s for s in (RESIDENTIAL, RESIDENTIAL_BUTTON, SHOP, COMMON_AREA)}


def strategy_named(name: str) -> Strategy | None:
    """The strategy called `name`, or None for a name we do not know (the cut policy then
    refuses to decide; notices follow the residential rules)."""
    return STRATEGIES.get(name)
