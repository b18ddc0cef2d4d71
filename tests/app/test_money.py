from decimal import Decimal

import pytest

from app.money import energy_cost, fen_to_yuan_str, parse_price, post_increment, to_fen, yuan_str_to_fen


@pytest.mark.parametrize("yuan, fen", [
    ("0.004", 0), ("0.005", 1), ("0.0149", 1), ("0.015", 2), ("6.889422", 689),
    ("-0.005", -1), ("-0.004", 0), ("149.4900", 14949),
])
def test_to_fen_rounds_half_up(yuan, fen):
    assert to_fen(Decimal(yuan)) == fen


@pytest.mark.parametrize("wh, price, exact", [
    (12340, "0.5583", "6.889422"), (1, "0.4883", "0.0004883"), (0, "0.5583", "0"),
    (240_000, "0.4883", "117.192"),
])
def test_energy_cost_is_exact(wh, price, exact):
    assert energy_cost(wh, Decimal(price)) == Decimal(exact)


def test_post_increment_carries_the_remainder():
    total, posted = Decimal(0), []
    for _ in range(3):
        posted.append(post_increment(total, Decimal("0.004")))
        total += Decimal("0.004")
    assert posted == [0, 1, 0]
    assert sum(posted) == to_fen(total)


def test_splitting_an_interval_never_changes_the_total():
    price = Decimal("0.5583")
    whole = post_increment(Decimal(0), energy_cost(12345, price))
    total, parts = Decimal(0), 0
    for wh in (1, 999, 3, 11342):
        parts += post_increment(total, energy_cost(wh, price))
        total += energy_cost(wh, price)
    assert parts == whole == 689


@pytest.mark.parametrize("fen, text", [(1000, "10.00"), (1, "0.01"), (0, "0.00"), (-500, "-5.00"), (4500, "45.00")])
def test_fen_to_yuan_str(fen, text):
    assert fen_to_yuan_str(fen) == text


@pytest.mark.parametrize("text, fen", [("10.00", 1000), ("0.01", 1), ("10", 1000), ("10.1", 1010), ("35.50", 3550)])
def test_yuan_str_to_fen(text, fen):
    assert yuan_str_to_fen(text) == fen


@pytest.mark.parametrize("text", ["10.001", "-1.00", "abc", "", "NaN", "Infinity"])
def test_yuan_str_to_fen_refuses(text):
    with pytest.raises(ValueError):
        yuan_str_to_fen(text)


@pytest.mark.parametrize("text, ok", [("0.4883", True), ("0.5", True), ("0.48831", False), ("-0.1", False), ("x", False)])
def test_parse_price(text, ok):
    if ok:
        assert parse_price(text) == Decimal(text)
    else:
        with pytest.raises(ValueError):
            parse_price(text)


@pytest.mark.parametrize("typed", ["1e2", "١٠٠", "1_000", "NaN", "Infinity", "0x10", "", "５e2",
                                   "+5", "5,00", "¥5"])
def test_an_amount_is_plain_digits_only(typed):
    with pytest.raises(ValueError, match="not a number"):
        yuan_str_to_fen(typed)


@pytest.mark.parametrize("typed", ["-5", "-0.01", "－5"])
def test_a_negative_amount_is_refused_as_negative(typed):
    with pytest.raises(ValueError, match="zero or more"):
        yuan_str_to_fen(typed)


@pytest.mark.parametrize("typed,fen", [("１００", 10000), ("１００．５", 10050), (" 35.50 ", 3550),
                                       (".5", 50), ("50.", 5000)])
def test_a_chinese_keyboards_full_width_digits_are_accepted(typed, fen):
    assert yuan_str_to_fen(typed) == fen
