"""The DL/T 645-2007 codec against frames written out by hand from the standard.

No frame here comes from our encoder: each is typed byte by byte, its checksum summed by hand
in the comment (CS = the sum of the bytes from the first 68H to the end of DATA, mod 256; DATA
bytes are sent plus 33H; multi-byte fields go low byte first).
"""

from __future__ import annotations

import datetime as dt

import pytest

from meters.dlt645 import codec as c
from meters.protocol import CLOSE_ALLOWED, KEEP_POWER, RELAY_FAULT, REMOTE_TRIP

ADDRESS = 123456789012  # A0..A5 on the wire: 12 90 78 56 34 12

# Read of combined active energy, total (DI 00 00 00 00) from meter 123456789012:
# 68 12 90 78 56 34 12 68 11 04 33 33 33 33 CS 16
# CS = 68+12+90+78+56+34+12+68 (=646) + 11 (17) + 04 + 33*4 (204) = 871 = 3*256 + 103 -> 67H
READ_TOTAL = bytes.fromhex("FE FE FE FE 68 12 90 78 56 34 12 68 11 04 33 33 33 33 67 16")

# Its reply, 91H, L=08: DI 00 00 00 00 (33 33 33 33) and 123456.78 kWh = 78 56 34 12 + 33H each
# = AB 89 67 45. CS = 646 + 91 (145) + 08 + 204 + AB (171) + 89 (137) + 67 (103) + 45 (69)
# = 1483 = 5*256 + 203 -> CBH
REPLY_TOTAL = bytes.fromhex(
    "FE FE FE FE 68 12 90 78 56 34 12 68 91 08 33 33 33 33 AB 89 67 45 CB 16")

# Abnormal reply D1H, L=01, error byte 02H (no data requested) + 33H = 35H.
# CS = 646 + D1 (209) + 01 + 35 (53) = 909 = 3*256 + 141 -> 8DH
REPLY_NO_DATA = bytes.fromhex("68 12 90 78 56 34 12 68 D1 01 35 8D 16")

# Trip (1CH, N1 = 1AH) to meter 000000000001: PA=02, password 000000, operator 00000000,
# N2=00, valid until 2030-01-02 03:04:05 (ss mm hh DD MM YY = 05 04 03 02 01 30).
# DATA + 33H: 35 33 33 33 | 33 33 33 33 | 4D 33 | 38 37 36 35 34 63, L = 10H (16 bytes).
# CS = 68+01+00*5+68+1C+10 (=253) + 35 (53) + 33*7 (357) + 4D (77) + 33 (51)
#      + 38 (56) + 37 (55) + 36 (54) + 35 (53) + 34 (52) + 63 (99) = 1160 = 4*256 + 136 -> 88H
TRIP_FRAME = bytes.fromhex(
    "FE FE FE FE 68 01 00 00 00 00 00 68 1C 10 "
    "35 33 33 33 33 33 33 33 4D 33 38 37 36 35 34 63 88 16")

# Status word 3 (DI 04 00 05 03: sent 03 05 00 04 -> 36 38 33 37) read from meter 1, value
# 0050H (bit4 relay off, bit6 relay command off), low byte first 50 00 -> 83 33.
# CS = 68+01+68 (=209) + 91 (145) + 06 + 36 (54) + 38 (56) + 33 (51) + 37 (55) + 83 (131)
#      + 33 (51) = 758 = 2*256 + 246 -> F6H
REPLY_STATUS3 = bytes.fromhex("68 01 00 00 00 00 00 68 91 06 36 38 33 37 83 33 F6 16")


def test_read_of_total_energy_is_the_hand_written_frame():
    assert c.encode_read(ADDRESS, c.ENERGY_TOTAL) == READ_TOTAL
    frame = c.decode_frame(READ_TOTAL)
    assert frame == (ADDRESS, c.READ, b"\x00\x00\x00\x00")
    assert c.decode_read_request(frame) == 0x00000000


def test_reply_with_total_energy_decodes_to_its_kwh():
    frame = c.decode_frame(REPLY_TOTAL)
    assert (frame.address, frame.control, frame.is_reply) == (ADDRESS, c.READ_REPLY, True)

    di, value = c.decode_read_reply(frame)

    assert di == c.ENERGY_TOTAL.di
    assert c.decode_value(c.ENERGY_TOTAL, value) == 12_345_678  # 123456.78 kWh in 0.01 kWh
    assert c.encode_read_reply(ADDRESS, c.ENERGY_TOTAL, 12_345_678) == REPLY_TOTAL


def test_abnormal_read_reply_carries_its_error_byte_in_words():
    frame = c.decode_frame(REPLY_NO_DATA)

    assert frame.is_abnormal
    assert c.decode_error_byte(frame) == 0x02
    assert c.describe_error(0x02) == "DL/T 645 error 0x02 (no data requested)"
    assert c.describe_error(0x05) == (
        "DL/T 645 error 0x05 (other error, password wrong or unauthorised)")


def test_trip_frame_is_the_hand_written_one_and_decodes_back():
    until = dt.datetime(2030, 1, 2, 3, 4, 5)

    assert c.encode_control(1, c.TRIP, 0, 0, until) == TRIP_FRAME
    command = c.decode_control_request(c.decode_frame(TRIP_FRAME))
    assert command == (0x02, 0, 0, c.TRIP, until)


def test_authorize_hook_replaces_the_plaintext_data():
    seen = []

    def esam(address, plaintext):
        seen.append((address, plaintext))
        return b"\x98" + bytes(19)  # what an ESAM would return: PA 98H, ciphertext, MAC

    frame = c.decode_frame(c.encode_control(1, c.TRIP, 0, 0, dt.datetime(2030, 1, 2, 3, 4, 5),
                                            authorize=esam))

    assert seen == [(1, bytes.fromhex("02 000000 00000000 1A 00 05 04 03 02 01 30"))]
    assert frame.data == b"\x98" + bytes(19)


def test_status_word_3_reply_maps_to_protocol_flags():
    di, value = c.decode_read_reply(c.decode_frame(REPLY_STATUS3))
    assert di == c.STATUS_WORD_3.di
    word3 = c.decode_value(c.STATUS_WORD_3, value)
    assert word3 == 0x0050
    assert c.status_flags(word3) == (True, REMOTE_TRIP)


@pytest.mark.parametrize(("word3", "word1", "expected"), [
    (0x0000, None, (False, 0)),  # on, commanded on
    (0x0010, None, (True, CLOSE_ALLOWED)),  # off, commanded on: armed (合闸允许)
    (0x0050, None, (True, REMOTE_TRIP)),  # off, commanded off
    (0x1000, None, (False, KEEP_POWER)),  # keep power (bit12)
    (0x1010, None, (True, KEEP_POWER | CLOSE_ALLOWED)),  # keep power, armed
    (0x0040, 0x0100, (False, RELAY_FAULT)),  # commanded off, still on, control circuit error
    (0x0040, 0x0000, (False, 0)),  # commanded off, still on, no fault flagged (welded)
    (0x0080, None, (False, 0)),  # pre-trip alarm: no protocol flag
])
def test_status_words_map_to_flags(word3, word1, expected):
    assert c.status_flags(word3, word1) == expected


def test_status_word_1_is_only_worth_reading_when_a_commanded_trip_did_not_open():
    assert c.needs_status_word_1(0x0040)
    assert not c.needs_status_word_1(0x0050)
    assert not c.needs_status_word_1(0x0000)
    assert not c.needs_status_word_1(0x0010)


def test_values_of_each_format():
    assert c.decode_value(c.VOLTAGE_A, bytes.fromhex("00 22")) == 2200  # 220.0 V
    assert c.decode_value(c.CURRENT_A, bytes.fromhex("50 45 00")) == 4550  # 004.550 A
    assert c.decode_value(c.POWER_TOTAL, bytes.fromhex("45 23 01")) == 12345  # 01.2345 kW
    assert c.decode_value(c.POWER_TOTAL, bytes.fromhex("45 23 81")) == -12345  # sign bit set
    block = bytes.fromhex("00 01 00 00  10 00 00 00  20 00 00 00  30 00 00 00  40 00 00 00")
    assert c.decode_value(c.ENERGY_BLOCK, block) == (100, 10, 20, 30, 40)


def test_snapshot_from_hand_written_values():
    block = bytes.fromhex("78 56 34 12  00 00 00 00  11 00 00 00  22 00 00 00  33 00 00 00")
    snapshot = c.decode_snapshot({
        c.ENERGY_BLOCK.di: block,
        c.STATUS_WORD_3.di: bytes.fromhex("50 00"),
        c.POWER_TOTAL.di: bytes.fromhex("45 23 01"),
        c.VOLTAGE_A.di: bytes.fromhex("05 22"),
        c.CURRENT_A.di: bytes.fromhex("67 45 00"),
    })

    assert snapshot.energy_raw == 12_345_678
    assert snapshot.energy_wh == 123_456_780
    assert snapshot.period_raw == (0, 11, 22, 33)
    assert (snapshot.voltage_dv, snapshot.current_ca, snapshot.power_w) == (2205, 456, 1234)
    assert (snapshot.relay_open, snapshot.status_bits, snapshot.command_counter) == (
        True, REMOTE_TRIP, 0)


def test_snapshot_needs_energy_and_status_word_3():
    with pytest.raises(c.CodecError, match="no energy read"):
        c.decode_snapshot({c.STATUS_WORD_3.di: b"\x00\x00"})
    with pytest.raises(c.CodecError, match="status word 3.*not read"):
        c.decode_snapshot({c.ENERGY_TOTAL.di: b"\x00\x00\x00\x00"})


# --- malformed frames: each check names what is wrong -------------------------------------------

@pytest.mark.parametrize(("raw", "message"), [
    # the reply with its checksum CBH changed to CCH
    ("68 12 90 78 56 34 12 68 91 08 33 33 33 33 AB 89 67 45 CC 16", "bad checksum: frame has CCH"),
    # the reply ending in 15H
    ("68 12 90 78 56 34 12 68 91 08 33 33 33 33 AB 89 67 45 CB 15", "bad end: last byte is 15H"),
    # L says 09 but 8 data bytes follow
    ("68 12 90 78 56 34 12 68 91 09 33 33 33 33 AB 89 67 45 CB 16", "wrong length: L=9"),
    # second 68H replaced by 69H
    ("68 12 90 78 56 34 12 69 11 04 33 33 33 33 67 16", "second 68H missing"),
    # starts with 16H
    ("16 12 90 78 56 34 12 68 11 04 33 33 33 33 67 16", "not 68H"),
    ("68 12 90 78 56 34", "too short"),
    ("FE FE FE", "only preamble"),
    # a wildcard byte in the address (CS = 68+AA+68+11+04+33*4 = 104+170+104+17+4+204 = 603
    # = 2*256 + 91 -> 5BH)
    ("68 AA 00 00 00 00 00 68 11 04 33 33 33 33 5B 16", "address: byte 0 is AAH, not BCD"),
])
def test_malformed_frames_are_refused_with_the_reason(raw, message):
    with pytest.raises(c.CodecError, match=message):
        c.decode_frame(bytes.fromhex(raw))


def test_non_bcd_value_is_refused():
    # 7AH: A is not a decimal digit
    with pytest.raises(c.CodecError, match="byte 0 is 7AH, not BCD"):
        c.decode_value(c.ENERGY_TOTAL, bytes.fromhex("7A 56 34 12"))
    with pytest.raises(c.CodecError, match="expected 4 bytes, got 3"):
        c.decode_value(c.ENERGY_TOTAL, bytes.fromhex("78 56 34"))


def test_non_bcd_time_in_a_control_is_refused():
    bad = bytearray(c.decode_frame(TRIP_FRAME).data)
    bad[10] = 0x6A  # seconds 6AH
    with pytest.raises(c.CodecError, match="not BCD"):
        c.decode_control_request(c.Frame(1, c.CONTROL, bytes(bad)))


def test_broadcast_control_and_unknown_actions_are_refused():
    until = dt.datetime(2030, 1, 1)
    with pytest.raises(c.CodecError, match="never broadcast"):
        c.encode_control(c.BROADCAST_ADDRESS, c.TRIP, 0, 0, until)
    with pytest.raises(c.CodecError, match="4FH is not one of"):
        c.encode_control(1, 0x4F, 0, 0, until)
    with pytest.raises(c.CodecError, match="password: 1234567 does not fit 6 BCD digits"):
        c.encode_control(1, c.TRIP, 1_234_567, 0, until)


def test_reader_resyncs_past_noise_and_broken_frames():
    reader = c.FrameReader()
    broken = bytes.fromhex("68 12 90 78 56 34 12 68 91 08 33 33 33 33 AB 89 67 45 00 16")
    reader.feed(b"\x00\x99" + broken + REPLY_NO_DATA[:5])

    assert reader.next() is None  # the good frame is not complete yet
    reader.feed(REPLY_NO_DATA[5:] + REPLY_TOTAL)

    assert reader.next() == c.decode_frame(REPLY_NO_DATA)
    assert reader.next() == c.decode_frame(REPLY_TOTAL)
    assert reader.next() is None
    assert any("bad checksum" in reason for reason in reader.rejected)
    assert any("outside any frame" in reason for reason in reader.rejected)


def test_address_digits_go_low_byte_first():
    assert c.encode_address(1) == bytes.fromhex("01 00 00 00 00 00")
    assert c.decode_address(bytes.fromhex("12 90 78 56 34 12")) == ADDRESS
    with pytest.raises(c.CodecError, match="not 12 digits"):
        c.encode_address(10**12)
