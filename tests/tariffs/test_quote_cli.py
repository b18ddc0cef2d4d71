"""`python -m app.tariffs.quote`, run as a manager would run it, on the example files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"
ROOT = Path(__file__).parents[2]


def quote(*args):
    argv = [str(EXAMPLES / a) if a.endswith(".json") else a for a in args]
    return subprocess.run([sys.executable, "-m", "app.tariffs.quote", *argv], cwd=ROOT, text=True,
                          capture_output=True, timeout=30)


def test_breakdown_ends_with_the_exact_charge_and_the_fen():
    result = quote("--tariff", "beijing_tiered.json", "--usage", "usage_crossing.json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "tiered tariff, monthly cycle; 200 kWh used before"
    assert lines[1].split() == ["tier", "1", "40.000", "kWh", "×", "0.4883", "元/kWh", "=",
                                "19.5320", "元"]
    assert lines[2].split()[:3] == ["tier", "2", "60.000"] and "32.2980" in lines[2]
    assert lines[-2:] == ["exact charge: 51.8300 元", "charge: 5183 fen (51.83 元)"]


def test_breakdown_names_tier_and_period():
    result = quote("--tariff", "zhejiang_tiered_tou.json", "--usage", "usage_peak_valley.json")
    assert result.returncode == 0, result.stderr
    rows = [line.split()[:4] for line in result.stdout.splitlines()[1:5]]
    assert rows == [["tier", "1", "peak", "36.060"], ["tier", "1", "valley", "23.940"],
                    ["tier", "2", "peak", "84.440"], ["tier", "2", "valley", "56.060"]]
    assert result.stdout.endswith("charge: 9851 fen (98.51 元)\n")


def test_json_output():
    result = quote("--tariff", "beijing_tiered.json", "--usage", "usage_300.json", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["exact_yuan"], out["charge_fen"]) == ("149.4900", 14949)
    assert out["lines"] == [
        {"tier": 1, "period": None, "energy_wh": 240000, "kwh": "240.000", "price": "0.4883",
         "amount_yuan": "117.1920"},
        {"tier": 2, "period": None, "energy_wh": 60000, "kwh": "60.000", "price": "0.5383",
         "amount_yuan": "32.2980"}]


def test_json_output_for_a_seasonal_time_of_use_tariff():
    result = quote("--tariff", "tou_three_periods.json", "--usage", "usage_summer.json", "--json")
    out = json.loads(result.stdout)
    assert (out["exact_yuan"], out["charge_fen"]) == ("55.0750", 5508)
    assert [(line["period"], line["kwh"]) for line in out["lines"]] == [
        ("spike", "10.000"), ("peak", "40.000"), ("flat", "30.000"), ("valley", "20.250")]


@pytest.mark.parametrize("tariff, usage, message", [
    ("bad_overlap.json", "usage_300.json",
     "bad_overlap.json: periods[1]: 21:00–08:00 overlaps periods[0] (peak) at 21:00"),
    ("bad_not_json.json", "usage_300.json", "bad_not_json.json: tariff: not valid JSON"),
    ("missing.json", "usage_300.json", "missing.json: cannot read the tariff file: No such file"),
    ("zhejiang_tiered_tou.json", "bad_usage_period.json",
     "bad_usage_period.json: usage.periods.shoulder: the tariff has no period 'shoulder'"),
    ("seasonal_tiered.json", "usage_300.json", "usage_300.json: usage.month: required"),
    ("flat.json", "bad_overlap.json", "bad_overlap.json: usage.kind: unknown field"),
])
def test_bad_input_exits_2_naming_the_field(tariff, usage, message):
    result = quote("--tariff", tariff, "--usage", usage)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("feikong quote: ") and message in result.stderr


def test_missing_arguments_exit_2():
    result = quote("--tariff", "flat.json")
    assert result.returncode == 2 and "--usage" in result.stderr


def test_help_exits_0():
    result = quote("--help")
    assert result.returncode == 0 and "--tariff" in result.stdout
