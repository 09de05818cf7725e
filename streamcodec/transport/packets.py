"""Versioned token packets: one data-channel message carries one packet.

Layout (big-endian)::

    byte 0     version (2 bits) | K reset | E end | R redundancy | X extension | 2 reserved (0)
    byte 1     config id (index announced in the signalling ``hello``)
    bytes 2-3  seq, u16, +1 per packet
    bytes 4-5  timestamp, u16: index (mod 2^16) of the first primary frame
    byte 6     n, number of primary frames (0..255)
    [R]        r, number of redundant frames (1..255): copies of frames timestamp-r .. timestamp-1
    [X]        extension length L (1..255), then L opaque bytes
    frames     the r redundant frames, then the n primary frames, in frame order:
               fixed-rate codecs: ``bits_per_frame`` bits each, MSB first, packed back to
               back, zero-padded to a whole byte at the end;
               variable-rate codecs: each frame as a length (1 or 2 bytes, 7 bits per byte,
               high bit = another byte follows; 1..16383) followed by its bytes.

Flags: K asks the receiver to reset its decoder before the first frame, E marks the
last packet of a talkspurt (discontinuous transmission follows), R means redundant
copies are present. A packet with ``n = 0`` carries only flags (e.g. E after silence).

``parse`` accepts exactly the byte strings ``encode`` produces (every field checked,
padding bits must be zero, no trailing bytes) and raises :class:`PacketError`
otherwise, so ``encode(parse(b)) == b`` for every accepted ``b``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: the packet format version this module writes and reads
PACKET_VERSION = 1
#: fixed header bytes (bytes 0-6)
HEADER_BYTES = 7
MAX_FRAMES = 255
MAX_VARIABLE_FRAME_BYTES = 16383

FLAG_RESET = 0x20
FLAG_END = 0x10
FLAG_REDUNDANCY = 0x08
FLAG_EXTENSION = 0x04
_RESERVED_MASK = 0x03


class PacketError(ValueError):
    """A byte string is not a valid packet (or a packet cannot be encoded)."""


@dataclass(frozen=True)
class Packet:
    """One token packet.

    ``frames`` are the primary frames starting at frame index ``timestamp``;
    ``redundant`` are copies of the ``len(redundant)`` frames just before it.
    """

    config_id: int
    seq: int
    timestamp: int
    frames: tuple[bytes, ...]
    redundant: tuple[bytes, ...] = ()
    reset: bool = False
    end: bool = False
    extension: bytes = b""

    def __post_init__(self) -> None:
        for name, top in (("config_id", 0xFF), ("seq", 0xFFFF), ("timestamp", 0xFFFF)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise PacketError(f"{name} must be an int in 0..{top}, got {value!r}")
        for name in ("frames", "redundant"):
            frames = getattr(self, name)
            if not isinstance(frames, tuple) or not all(isinstance(f, bytes) for f in frames):
                raise PacketError(f"{name} must be a tuple of bytes")
            if len(frames) > MAX_FRAMES:
                raise PacketError(f"{len(frames)} {name} in one packet; at most {MAX_FRAMES}")
        if not isinstance(self.extension, bytes) or len(self.extension) > 255:
            raise PacketError("extension must be bytes of length 0..255")

    @property
    def end_timestamp(self) -> int:
        """Frame index (mod 2^16) just after the last primary frame."""
        return (self.timestamp + len(self.frames)) & 0xFFFF


def _pack_fixed(frames: Sequence[bytes], bits: int) -> bytes:
    nbytes_frame = (bits + 7) // 8
    pad = 8 * nbytes_frame - bits
    acc = 0
    for i, frame in enumerate(frames):
        if len(frame) != nbytes_frame:
            raise PacketError(f"frame {i} has {len(frame)} bytes, expected {nbytes_frame}")
        value = int.from_bytes(frame, "big")
        if value & ((1 << pad) - 1):
            raise PacketError(f"frame {i} has non-zero padding bits")
        acc = (acc << bits) | (value >> pad)
    total = bits * len(frames)
    nbytes = (total + 7) // 8
    return (acc << (8 * nbytes - total)).to_bytes(nbytes, "big")


def _unpack_fixed(data: bytes, count: int, bits: int) -> list[bytes]:
    total = bits * count
    nbytes = (total + 7) // 8
    if len(data) != nbytes:
        raise PacketError(f"{count} frames of {bits} bits need {nbytes} bytes, got {len(data)}")
    acc = int.from_bytes(data, "big")
    tail = 8 * nbytes - total
    if acc & ((1 << tail) - 1):
        raise PacketError("non-zero padding bits after the last frame")
    acc >>= tail
    nbytes_frame = (bits + 7) // 8
    pad = 8 * nbytes_frame - bits
    mask = (1 << bits) - 1
    out = []
    for i in range(count):
        value = (acc >> (bits * (count - 1 - i))) & mask
        out.append((value << pad).to_bytes(nbytes_frame, "big"))
    return out


def _pack_variable(frames: Sequence[bytes]) -> bytes:
    out = bytearray()
    for i, frame in enumerate(frames):
        n = len(frame)
        if not 1 <= n <= MAX_VARIABLE_FRAME_BYTES:
            raise PacketError(f"frame {i} has {n} bytes; variable frames hold 1..16383")
        out += bytes([n]) if n < 0x80 else bytes([0x80 | (n >> 7), n & 0x7F])
        out += frame
    return bytes(out)


def _unpack_variable(data: bytes, count: int) -> list[bytes]:
    out, pos = [], 0
    for i in range(count):
        if pos >= len(data):
            raise PacketError(f"packet ends before the length of frame {i}")
        n = data[pos]
        pos += 1
        if n & 0x80:
            if pos >= len(data):
                raise PacketError(f"packet ends inside the length of frame {i}")
            low = data[pos]
            pos += 1
            if low & 0x80:
                raise PacketError(f"frame {i} length uses more than 2 bytes")
            n = ((n & 0x7F) << 7) | low
            if n < 0x80:
                raise PacketError(f"frame {i} length {n} is not minimally encoded")
        if n == 0:
            raise PacketError(f"frame {i} has length 0")
        if pos + n > len(data):
            raise PacketError(f"frame {i} needs {n} bytes, {len(data) - pos} left")
        out.append(data[pos : pos + n])
        pos += n
    if pos != len(data):
        raise PacketError(f"{len(data) - pos} trailing bytes after the last frame")
    return out


def encode(packet: Packet, bits_per_frame: int | None) -> bytes:
    """Serialise ``packet``; ``bits_per_frame`` is its codec's (``None`` = variable rate)."""
    if not isinstance(packet, Packet):
        raise TypeError(f"expected a Packet, got {type(packet).__name__}")
    flags = PACKET_VERSION << 6
    flags |= FLAG_RESET if packet.reset else 0
    flags |= FLAG_END if packet.end else 0
    flags |= FLAG_REDUNDANCY if packet.redundant else 0
    flags |= FLAG_EXTENSION if packet.extension else 0
    head = bytearray(
        [
            flags,
            packet.config_id,
            packet.seq >> 8,
            packet.seq & 0xFF,
            packet.timestamp >> 8,
            packet.timestamp & 0xFF,
            len(packet.frames),
        ]
    )
    if packet.redundant:
        head.append(len(packet.redundant))
    if packet.extension:
        head.append(len(packet.extension))
        head += packet.extension
    frames = packet.redundant + packet.frames
    if bits_per_frame is None:
        body = _pack_variable(frames)
    elif isinstance(bits_per_frame, int) and bits_per_frame > 0:
        body = _pack_fixed(frames, bits_per_frame)
    else:
        raise PacketError(f"bits_per_frame must be a positive int or None, got {bits_per_frame!r}")
    return bytes(head) + body


@dataclass(frozen=True)
class Header:
    version: int
    config_id: int
    seq: int
    timestamp: int


def parse_header(data: bytes) -> Header:
    """Read the fields every version keeps in place (version, config id, seq, timestamp)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"packet must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise PacketError(f"packet has {len(data)} bytes; the header alone is {HEADER_BYTES}")
    return Header(
        version=data[0] >> 6,
        config_id=data[1],
        seq=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:6], "big"),
    )


def parse(data: bytes, formats: Mapping[int, int | None]) -> Packet:
    """Parse one packet; ``formats`` maps each known config id to its ``bits_per_frame``.

    Raises :class:`PacketError` (a ``ValueError``) for anything malformed, an unknown
    version or an unknown config id.
    """
    header = parse_header(data)
    data = bytes(data)
    if header.version != PACKET_VERSION:
        raise PacketError(f"packet version {header.version}, this reader knows {PACKET_VERSION}")
    flags = data[0]
    if flags & _RESERVED_MASK:
        raise PacketError(f"reserved flag bits set (byte 0 = {flags:#04x})")
    if header.config_id not in formats:
        raise PacketError(f"unknown config id {header.config_id}; known: {sorted(formats)}")
    bits = formats[header.config_id]
    n = data[6]
    pos = HEADER_BYTES
    r = 0
    if flags & FLAG_REDUNDANCY:
        if pos >= len(data):
            raise PacketError("R flag set but the packet ends before the redundancy count")
        r = data[pos]
        pos += 1
        if r == 0:
            raise PacketError("R flag set with a redundancy count of 0")
    extension = b""
    if flags & FLAG_EXTENSION:
        if pos >= len(data):
            raise PacketError("X flag set but the packet ends before the extension length")
        length = data[pos]
        pos += 1
        if length == 0:
            raise PacketError("X flag set with an extension length of 0")
        if pos + length > len(data):
            raise PacketError(f"extension of {length} bytes runs past the packet end")
        extension = data[pos : pos + length]
        pos += length
    body = data[pos:]
    if bits is None:
        frames = _unpack_variable(body, r + n)
    else:
        frames = _unpack_fixed(body, r + n, bits)
    return Packet(
        config_id=header.config_id,
        seq=header.seq,
        timestamp=header.timestamp,
        frames=tuple(frames[r:]),
        redundant=tuple(frames[:r]),
        reset=bool(flags & FLAG_RESET),
        end=bool(flags & FLAG_END),
        extension=extension,
    )


def packet_bytes(
    n_frames: int, n_redundant: int, bits_per_frame: int | None, frame_bytes: float = 16.0
) -> int:
    """Size of a packet with these frame counts and no extension (for planning).

    For a variable-rate codec (``bits_per_frame is None``) ``frame_bytes`` is the
    expected size of one frame.
    """
    size = HEADER_BYTES + (1 if n_redundant else 0)
    frames = n_frames + n_redundant
    if bits_per_frame is None:
        per_frame = frame_bytes + (1 if frame_bytes < 0x80 else 2)
        return size + int(math.ceil(frames * per_frame))
    return size + (bits_per_frame * frames + 7) // 8
