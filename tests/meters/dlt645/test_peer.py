"""Our frames read by an independent implementation: the PyPI `dlt645` package (one author, no
remote control), when it is installed. It is not a project dependency; the test skips without it
(`pip install dlt645` to run it)."""

from __future__ import annotations

import datetime as dt

import pytest

from meters.dlt645 import codec as c

peer = pytest.importorskip("dlt645.protocol.protocol",
                           reason="the PyPI dlt645 package is not installed")


def peer_decode(raw: bytes):
    return peer.DLT645Protocol.deserialize(raw)


def test_peer_reads_our_read_request():
    frame = peer_decode(c.encode_read(123456789012, c.ENERGY_BLOCK))

    assert bytes(frame.addr) == bytes.fromhex("12 90 78 56 34 12")
    assert frame.ctrl_code == 0x11
    assert bytes(frame.data) == bytes.fromhex("00 FF 00 00")  # DI0 first, offset removed


def test_peer_reads_our_reply_and_control_frames():
    reply = peer_decode(c.encode_read_reply(1, c.ENERGY_TOTAL, 12_345_678))
    assert reply.ctrl_code == 0x91
    assert bytes(reply.data) == bytes.fromhex("00 00 00 00 78 56 34 12")

    trip = peer_decode(c.encode_control(1, c.TRIP, 0, 0, dt.datetime(2030, 1, 2, 3, 4, 5)))
    assert trip.ctrl_code == 0x1C
    assert bytes(trip.data) == bytes.fromhex("02 000000 00000000 1A 00 05 04 03 02 01 30")


def test_our_decoder_reads_the_peers_frame():
    raw = peer.DLT645Protocol.build_frame(bytes.fromhex("12 90 78 56 34 12"), 0x91,
                                          bytes.fromhex("00 00 00 00 78 56 34 12"))

    frame = c.decode_frame(bytes(raw))

    assert frame == (123456789012, 0x91, bytes.fromhex("00 00 00 00 78 56 34 12"))
