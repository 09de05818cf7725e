"""Token frames as bytes: fixed-width fields packed MSB first, zero-padded to whole bytes.

A voice codec frame is ``(semantic id, acoustic code)`` in ``sem_bits + acoustic_bits``
bits (13 + 13 = 26 -> 4 bytes with 6 zero pad bits), which is the codec
interface's fixed-rate frame contract: a packetiser may send exactly the
``bits_per_frame`` bits.
"""

from __future__ import annotations

from collections.abc import Sequence


def pack_fields(values: Sequence[int], widths: Sequence[int]) -> bytes:
    """Pack ``values`` (each ``0 <= v < 2**w``) MSB first into ``ceil(sum(widths) / 8)`` bytes."""
    if len(values) != len(widths):
        raise ValueError(f"{len(values)} values for {len(widths)} fields")
    acc, total = 0, 0
    for v, w in zip(values, widths, strict=True):
        v = int(v)
        if not 0 <= v < (1 << w):
            raise ValueError(f"value {v} does not fit in {w} bits")
        acc = (acc << w) | v
        total += w
    n_bytes = (total + 7) // 8
    return (acc << (8 * n_bytes - total)).to_bytes(n_bytes, "big")


def unpack_fields(frame: bytes, widths: Sequence[int]) -> list[int]:
    """Inverse of :func:`pack_fields`; raises ``ValueError`` on a wrong length or non-zero
    padding bits."""
    total = sum(widths)
    n_bytes = (total + 7) // 8
    if len(frame) != n_bytes:
        raise ValueError(f"frame has {len(frame)} bytes, expected {n_bytes}")
    acc = int.from_bytes(frame, "big")
    pad = 8 * n_bytes - total
    if acc & ((1 << pad) - 1):
        raise ValueError("frame has non-zero padding bits")
    acc >>= pad
    out = []
    for w in reversed(widths):
        out.append(acc & ((1 << w) - 1))
        acc >>= w
    return out[::-1]
