"""The ``.sc`` file: a codec's frames on disk, versioned and checksummed.

Layout (big-endian)::

    magic        4 bytes  b"SCDC"
    version      u8       FORMAT_VERSION (1); other versions are rejected
    flags        u8       bit 0: variable-rate frames; other bits must be 0
    name_len     u8       then the codec name, ASCII (e.g. "voice-700")
    sample_rate  u32
    num_samples  u64      length of the encoded signal (decoders trim to it)
    bits         u16      bits per frame (fixed rate; 0 when variable)
    frame_count  u32
    payload      fixed rate: the frames' ``bits`` bits each, MSB first, back to back,
                 zero-padded to a whole byte; variable rate: per frame a u16 length
                 and its bytes
    crc32        u32      of every byte before it

:func:`read_sc` checks every field and raises :class:`ScFileError` (a ``ValueError``)
naming what is wrong: not an .sc file, unknown version, truncated, trailing bytes,
checksum mismatch, bad padding.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"SCDC"
FORMAT_VERSION = 1
FLAG_VARIABLE = 0x01
_HEAD = struct.Struct(">IQHI")  # sample_rate, num_samples, bits, frame_count


class ScFileError(ValueError):
    """A byte string or file is not a valid ``.sc`` file."""


@dataclass(frozen=True)
class ScFile:
    codec: str
    sample_rate: int
    num_samples: int
    bits_per_frame: int | None  # None: variable-rate frames
    frames: tuple[bytes, ...]


def pack_bits(frames: list[bytes] | tuple[bytes, ...], bits: int) -> bytes:
    """Concatenate the first ``bits`` bits of each frame (MSB first), zero-pad to a byte."""
    n_bytes = (bits + 7) // 8
    if not frames:
        return b""
    if any(len(f) != n_bytes for f in frames):
        raise ScFileError(f"every frame must have {n_bytes} bytes for {bits} bits")
    arr = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), n_bytes)
    b = np.unpackbits(arr, axis=1)
    if b[:, bits:].any():
        raise ScFileError("frames have non-zero padding bits")
    return np.packbits(b[:, :bits].reshape(-1)).tobytes()


def unpack_bits(payload: bytes, bits: int, count: int) -> tuple[bytes, ...]:
    """Inverse of :func:`pack_bits`."""
    if len(payload) != (bits * count + 7) // 8:
        raise ScFileError(
            f"payload has {len(payload)} bytes, {count} frames of {bits} bits need "
            f"{(bits * count + 7) // 8}"
        )
    if count == 0:
        return ()
    b = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    if b[bits * count :].any():
        raise ScFileError("non-zero padding bits at the end of the payload")
    frames = b[: bits * count].reshape(count, bits)
    pad = (-bits) % 8
    frames = np.concatenate([frames, np.zeros((count, pad), dtype=np.uint8)], axis=1)
    packed = np.packbits(frames, axis=1)
    return tuple(row.tobytes() for row in packed)


def dumps(sc: ScFile) -> bytes:
    name = sc.codec.encode("ascii")
    if not 1 <= len(name) <= 255:
        raise ScFileError(f"codec name must be 1..255 ASCII characters, got {sc.codec!r}")
    if sc.bits_per_frame is not None and not 1 <= sc.bits_per_frame <= 0xFFFF:
        raise ScFileError(f"bits_per_frame must be in 1..65535, got {sc.bits_per_frame}")
    flags = FLAG_VARIABLE if sc.bits_per_frame is None else 0
    head = MAGIC + bytes([FORMAT_VERSION, flags, len(name)]) + name
    head += _HEAD.pack(sc.sample_rate, sc.num_samples, sc.bits_per_frame or 0, len(sc.frames))
    if sc.bits_per_frame is None:
        parts = []
        for f in sc.frames:
            if not 1 <= len(f) <= 0xFFFF:
                raise ScFileError(f"variable-rate frame of {len(f)} bytes (1..65535 allowed)")
            parts.append(struct.pack(">H", len(f)) + f)
        payload = b"".join(parts)
    else:
        payload = pack_bits(sc.frames, sc.bits_per_frame)
    body = head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def loads(data: bytes) -> ScFile:
    if len(data) < 4 or data[:4] != MAGIC:
        raise ScFileError("not a streamcodec .sc file (bad magic)")
    if len(data) < 7:
        raise ScFileError("truncated .sc header")
    version, flags, name_len = data[4], data[5], data[6]
    if version != FORMAT_VERSION:
        raise ScFileError(
            f".sc format version {version} is not supported (this streamcodec reads "
            f"{FORMAT_VERSION})"
        )
    if flags & ~FLAG_VARIABLE:
        raise ScFileError(f"unknown .sc flags 0x{flags:02x}")
    pos = 7 + name_len
    if len(data) < pos + _HEAD.size + 4:
        raise ScFileError("truncated .sc header")
    body, crc = data[:-4], struct.unpack(">I", data[-4:])[0]
    if zlib.crc32(body) != crc:
        raise ScFileError(".sc checksum mismatch: the file is corrupt or truncated")
    try:
        name = data[7:pos].decode("ascii")
    except UnicodeDecodeError:
        raise ScFileError("codec name is not ASCII") from None
    rate, num_samples, bits, count = _HEAD.unpack_from(data, pos)
    payload = body[pos + _HEAD.size :]
    if flags & FLAG_VARIABLE:
        if bits != 0:
            raise ScFileError("variable-rate .sc file with non-zero bits per frame")
        frames, i = [], 0
        for _ in range(count):
            if i + 2 > len(payload):
                raise ScFileError("truncated variable-rate payload")
            n = struct.unpack_from(">H", payload, i)[0]
            if n == 0 or i + 2 + n > len(payload):
                raise ScFileError("bad frame length in variable-rate payload")
            frames.append(payload[i + 2 : i + 2 + n])
            i += 2 + n
        if i != len(payload):
            raise ScFileError(f"{len(payload) - i} trailing payload bytes")
        return ScFile(name, rate, num_samples, None, tuple(frames))
    if bits == 0:
        raise ScFileError("fixed-rate .sc file with 0 bits per frame")
    return ScFile(name, rate, num_samples, bits, unpack_bits(payload, bits, count))


def write_sc(path: str | Path, sc: ScFile) -> None:
    Path(path).write_bytes(dumps(sc))


def read_sc(path: str | Path) -> ScFile:
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise ScFileError(f"{path} is a directory") from None
    try:
        return loads(data)
    except ScFileError as exc:
        raise ScFileError(f"{path}: {exc}") from None
