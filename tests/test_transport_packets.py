"""Token packets: exact round trips, canonical parsing, malformed input rejected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcodec.transport.packets import (
    FLAG_END,
    FLAG_REDUNDANCY,
    FLAG_RESET,
    HEADER_BYTES,
    PACKET_VERSION,
    Packet,
    PacketError,
    encode,
    packet_bytes,
    parse,
    parse_header,
)


def fixed_frame(bits: int):
    """Strategy: one frame of ``bits`` bits, MSB first, zero-padded to whole bytes."""
    nbytes = (bits + 7) // 8
    pad = 8 * nbytes - bits
    return st.integers(0, (1 << bits) - 1).map(lambda v: (v << pad).to_bytes(nbytes, "big"))


@st.composite
def packets(draw, bits: int | None):
    frame = fixed_frame(bits) if bits is not None else st.binary(min_size=1, max_size=300)
    return Packet(
        config_id=draw(st.integers(0, 255)),
        seq=draw(st.integers(0, 0xFFFF)),
        timestamp=draw(st.integers(0, 0xFFFF)),
        frames=tuple(draw(st.lists(frame, max_size=12))),
        redundant=tuple(draw(st.lists(frame, max_size=4))),
        reset=draw(st.booleans()),
        end=draw(st.booleans()),
        extension=draw(st.binary(max_size=6)),
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data(), bits=st.integers(1, 70))
def test_packet_fixed_rate_round_trip_exact(data, bits):
    packet = data.draw(packets(bits))
    wire = encode(packet, bits)
    assert parse(wire, {packet.config_id: bits}) == packet
    # frames are bit-packed: header + counts + ceil(total bits / 8)
    n_bits = bits * (len(packet.frames) + len(packet.redundant))
    extra = (1 if packet.redundant else 0) + (1 + len(packet.extension) if packet.extension else 0)
    assert len(wire) == HEADER_BYTES + extra + (n_bits + 7) // 8


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_packet_variable_rate_round_trip_exact(data):
    packet = data.draw(packets(None))
    assert parse(encode(packet, None), {packet.config_id: None}) == packet


@settings(max_examples=400, deadline=None)
@given(blob=st.binary(max_size=80), bits=st.sampled_from([None, 1, 7, 8, 13, 28, 64]))
def test_parse_arbitrary_bytes_never_crashes_and_is_canonical(blob, bits):
    formats = {i: bits for i in range(256)}
    try:
        packet = parse(blob, formats)
    except PacketError:
        return
    assert encode(packet, bits) == blob


@settings(max_examples=200, deadline=None)
@given(data=st.data(), bits=st.sampled_from([None, 28]))
def test_parse_mutated_packets_rejects_or_round_trips(data, bits):
    wire = bytearray(encode(data.draw(packets(bits)), bits))
    pos = data.draw(st.integers(0, len(wire) - 1))
    wire[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    for blob in (bytes(wire), bytes(wire[:cut]), bytes(wire) + b"\x00"):
        try:
            packet = parse(blob, {i: bits for i in range(256)})
        except PacketError:
            continue
        assert encode(packet, bits) == blob


def test_codec2_700c_frames_pack_at_bit_granularity():
    # two 28-bit frames (4 bytes each on the codec side) take 7 bytes, not 8
    f1, f2 = bytes.fromhex("abcdef10"), bytes.fromhex("12345670")
    wire = encode(Packet(config_id=9, seq=0x0102, timestamp=0x0304, frames=(f1, f2)), 28)
    assert wire.hex() == "40" + "09" + "0102" + "0304" + "02" + "abcdef1123456" + "7"
    assert len(wire) == HEADER_BYTES + 7
    assert parse(wire, {9: 28}).frames == (f1, f2)


def test_header_flags_and_fields():
    p = Packet(config_id=5, seq=65535, timestamp=7, frames=(b"\x80",), redundant=(b"\x40",),
               reset=True, end=True)  # fmt: skip
    wire = encode(p, 2)
    assert wire[0] >> 6 == PACKET_VERSION
    assert (
        wire[0] & (FLAG_RESET | FLAG_END | FLAG_REDUNDANCY)
        == FLAG_RESET | FLAG_END | FLAG_REDUNDANCY
    )
    h = parse_header(wire)
    assert (h.version, h.config_id, h.seq, h.timestamp) == (PACKET_VERSION, 5, 65535, 7)
    assert p.end_timestamp == 8


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "header"),
        (bytes([0x40, 1, 0, 0, 0, 0]), "header"),
        (bytes([0x80, 1, 0, 0, 0, 0, 0]), "version 2"),
        (bytes([0x41, 1, 0, 0, 0, 0, 0]), "reserved"),
        (bytes([0x40, 2, 0, 0, 0, 0, 0]), "unknown config id 2"),
        (bytes([0x40, 1, 0, 0, 0, 0, 1]), "need 4 bytes"),
        (bytes([0x40, 1, 0, 0, 0, 0, 0, 0]), "need 0 bytes"),
        (bytes([0x48, 1, 0, 0, 0, 0, 0]), "redundancy count"),
        (bytes([0x48, 1, 0, 0, 0, 0, 0, 0]), "count of 0"),
        (bytes([0x44, 1, 0, 0, 0, 0, 0, 3, 1]), "past the packet end"),
        (bytes([0x40, 1, 0, 0, 0, 0, 1, 0xAB, 0xCD, 0xEF, 0x1F]), "padding"),
    ],
)
def test_parse_rejects_malformed_with_clear_error(blob, message):
    with pytest.raises(PacketError, match=message):
        parse(blob, {1: 28})


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (bytes([0x40, 1, 0, 0, 0, 0, 1, 0]), "length 0"),
        (bytes([0x40, 1, 0, 0, 0, 0, 1, 5, 1, 2]), "needs 5 bytes"),
        (bytes([0x40, 1, 0, 0, 0, 0, 1, 0x80, 0x05] + [0] * 5), "not minimally"),
        (bytes([0x40, 1, 0, 0, 0, 0, 1, 1, 9, 9]), "trailing"),
        (bytes([0x40, 1, 0, 0, 0, 0, 1, 0x81]), "inside the length"),
    ],
)
def test_parse_variable_rejects_malformed(blob, message):
    with pytest.raises(PacketError, match=message):
        parse(blob, {1: None})


def test_encode_rejects_bad_frames_and_fields():
    with pytest.raises(PacketError, match="expected 4"):
        encode(Packet(1, 0, 0, frames=(b"\x00\x00\x00",)), 28)
    with pytest.raises(PacketError, match="padding"):
        encode(Packet(1, 0, 0, frames=(b"\x00\x00\x00\x01",)), 28)
    with pytest.raises(PacketError, match="1..16383"):
        encode(Packet(1, 0, 0, frames=(b"",)), None)
    with pytest.raises(PacketError, match="seq"):
        Packet(1, 70000, 0, frames=())
    with pytest.raises(PacketError, match="at most 255"):
        Packet(1, 0, 0, frames=(b"\x00",) * 256)
    with pytest.raises(TypeError):
        encode(b"not a packet", 28)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_header("text")  # type: ignore[arg-type]


def test_packet_bytes_matches_encoded_size():
    for n, r in [(1, 0), (4, 0), (16, 2), (0, 0)]:
        frames = (bytes(4),) * n
        red = (bytes(4),) * r
        wire = encode(Packet(1, 0, 0, frames=frames, redundant=red), 28)
        assert packet_bytes(n, r, 28) == len(wire)
    wire = encode(Packet(1, 0, 0, frames=(bytes(15),) * 3), None)
    assert packet_bytes(3, 0, None, frame_bytes=15) == len(wire)
