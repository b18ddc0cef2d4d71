"""The register codec: pure words <-> values, as tables."""

from __future__ import annotations

import pytest

from meters.modbus import registers as r
from meters.modbus.codec import (
    decode_allow_close,
    MeterSnapshot,
    decode_block,
    decode_relay,
    decode_relay_command,
    decode_value,
    encode_block,
    encode_relay_command,
    encode_value,
)


def block(**words: list[int]) -> list[int]:
    """A poll block of zeros with the named registers set to the given words."""
    result = [0] * r.BLOCK_COUNT
    for name, value in words.items():
        reg = r.REGISTER_MAP[name]
        offset = reg.address - r.BLOCK_START
        assert len(value) == reg.words
        result[offset : offset + reg.words] = value
    return result


@pytest.mark.parametrize(
    ("energy_words", "relay_word", "energy_raw", "energy_wh", "relay_open"),
    [
        ([0, 0], [0], 0, 0, False),
        ([0, 1234], [0], 1234, 12_340, False),
        ([1, 0], [1], 65_536, 655_360, True),  # high word first
        ([1, 2], [1], 65_538, 655_380, True),
        ([0xFFFF, 0xFFFF], [0], 2**32 - 1, (2**32 - 1) * 10, False),
    ],
)
def test_decode_block_energy_and_relay(energy_words, relay_word, energy_raw, energy_wh, relay_open):
    snapshot = decode_block(block(ENERGY_TOTAL=energy_words, RELAY_STATE=relay_word))

    assert snapshot.energy_raw == energy_raw
    assert snapshot.energy_wh == energy_wh
    assert snapshot.relay_open is relay_open


@pytest.mark.parametrize(
    ("name", "words", "field", "value"),
    [
        ("ENERGY_VALLEY", [0, 7], "period_raw", (0, 0, 0, 7)),
        ("ENERGY_SPIKE", [2, 0], "period_raw", (131_072, 0, 0, 0)),
        ("VOLTAGE", [2201], "voltage_dv", 2201),
        ("CURRENT", [523], "current_ca", 523),
        ("ACTIVE_POWER", [1150], "power_w", 1150),
        ("ACTIVE_POWER", [0xFFFF], "power_w", -1),  # INT16
        ("POWER_FACTOR", [0x8000], "power_factor_milli", -32_768),
        ("FREQUENCY", [4998], "frequency_chz", 4998),
        ("STATUS_BITS", [1 << r.STATUS_REMOTE_TRIP], "remote_trip", True),
        ("STATUS_BITS", [1 << r.STATUS_KEEP_POWER], "keep_power", True),
        ("COMMAND_COUNTER", [65_535], "command_counter", 65_535),
    ],
)
def test_decode_block_fields(name, words, field, value):
    assert getattr(decode_block(block(**{name: words})), field) == value


def test_encode_block_round_trips():
    snapshot = MeterSnapshot(
        energy_raw=2**32 - 2,
        energy_wh=(2**32 - 2) * 10,
        period_raw=(1, 2, 3, 70_000),
        voltage_dv=2200,
        current_ca=455,
        power_w=-1000,
        relay_open=True,
        status_bits=0b11000,
        command_counter=9,
        apparent_power_va=1000,
        power_factor_milli=-999,
        frequency_chz=5000,
    )

    assert decode_block(encode_block(snapshot)) == snapshot


@pytest.mark.parametrize("length", [0, r.BLOCK_COUNT - 1, r.BLOCK_COUNT + 1])
def test_decode_block_rejects_wrong_length(length):
    with pytest.raises(ValueError, match="expected"):
        decode_block([0] * length)


@pytest.mark.parametrize(
    "words", [[], [0], [0, 0, 0], [0x1_0000, 0], [0, -1], [2, 0]],
    ids=["empty", "one", "three", "17-bit", "negative", "unknown state"]
)
def test_decode_relay_rejects_bad_words(words):
    with pytest.raises(ValueError):
        decode_relay(words)


@pytest.mark.parametrize(("words", "relay_open", "keep_power", "armed", "fault", "cover"), [
    ([0, 0], False, False, False, False, False),
    ([1, 0b1000], True, False, False, False, False),  # remote trip latched
    ([0, 0b1_0000], False, True, False, False, False),  # keep-power (bit 4)
    ([1, 0b10_1000], True, False, True, False, False),  # armed for the button (bit 5)
    ([0, 0b100_0000], False, False, False, True, False),  # relay fault (bit 6)
    ([0, 0b1000_0000], False, False, False, False, True),  # cover open (bit 7)
])
def test_decode_relay(words, relay_open, keep_power, armed, fault, cover):
    state = decode_relay(words)
    assert (state.open, state.keep_power, state.close_allowed, state.relay_fault,
            state.cover_open) == (relay_open, keep_power, armed, fault, cover)


def test_relay_control_words():
    assert encode_relay_command(True) == [1, 1]
    assert encode_relay_command(False) == [1, 0]
    assert encode_relay_command(False, close_allowed=True) == [1, 2]
    assert decode_allow_close([1, 2]) and not decode_allow_close([1, 0])


def test_unknown_relay_state_is_an_error_not_closed():
    with pytest.raises(ValueError, match="unknown value 2"):
        decode_block(block(RELAY_STATE=[2]))


@pytest.mark.parametrize(("open_relay", "words"), [(True, [1, 1]), (False, [1, 0])])
def test_relay_command_round_trip(open_relay, words):
    assert encode_relay_command(open_relay) == words
    assert decode_relay_command(words) is open_relay


@pytest.mark.parametrize("words", [[0, 0], [0, 1], [1, 2], [2, 1], [1], [1, 1, 1], []])
def test_decode_relay_command_rejects_other_values(words):
    assert decode_relay_command(words) is None


@pytest.mark.parametrize(
    ("value", "datatype", "words"),
    [
        (0x12345678, r.UINT32, [0x1234, 0x5678]),
        (-2, r.INT16, [0xFFFE]),
        (65_535, r.UINT16, [0xFFFF]),
    ],
)
def test_value_words(value, datatype, words):
    assert encode_value(value, datatype) == words
    assert decode_value(words, datatype) == value


@pytest.mark.parametrize(
    ("value", "datatype"), [(-1, r.UINT16), (32_768, r.INT16), (2**32, r.UINT32)]
)
def test_encode_value_rejects_out_of_range(value, datatype):
    with pytest.raises(ValueError, match="does not fit"):
        encode_value(value, datatype)


def test_register_map_check_catches_overlap(monkeypatch):
    overlapping = r.Register(r.ENERGY_TOTAL.address + 1, r.UINT16)
    monkeypatch.setitem(r.REGISTER_MAP, "OVERLAPPING", overlapping)

    with pytest.raises(ValueError, match="overlaps"):
        r._check_map()
