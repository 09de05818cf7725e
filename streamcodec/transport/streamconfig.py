"""The wire description of a codec stream, announced in the signalling ``hello``.

A receiver needs four numbers to unpack and play a sender's packets: the codec
name (to load its decoder), the sample rate, the samples per frame and the bits
per frame (``None`` for a variable-rate codec). :class:`StreamConfig` holds them;
each packet's one-byte *config id* points into the table the sender announced.

The default id is a stable hash of the description, so the same codec set-up gets
the same id in every process (any codec of the ``Codec`` interface, e.g.
``codec2-700c`` today and ``voice-700`` later, plugs in without a central table).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from streamcodec.codec import Codec

#: version of the ``StreamConfig`` JSON shape
STREAM_CONFIG_VERSION = 1


@dataclass(frozen=True)
class StreamConfig:
    """What a receiver must know about a sender's codec frames."""

    codec: str
    sample_rate: int
    frame_samples: int
    bits_per_frame: int | None

    def __post_init__(self) -> None:
        if not isinstance(self.codec, str) or not 0 < len(self.codec) <= 64:
            raise ValueError(f"codec name must be a str of 1..64 chars, got {self.codec!r}")
        for field in ("sample_rate", "frame_samples"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{field} must be a positive int, got {value!r}")
        if self.sample_rate > 384_000:
            raise ValueError(f"sample_rate {self.sample_rate} is above 384000 Hz")
        if self.frame_samples > self.sample_rate:
            raise ValueError(f"frame_samples {self.frame_samples} is longer than 1 s")
        bpf = self.bits_per_frame
        if bpf is not None and (isinstance(bpf, bool) or not isinstance(bpf, int)):
            raise ValueError(f"bits_per_frame must be an int or None, got {bpf!r}")
        if bpf is not None and not 0 < bpf <= 65536:
            raise ValueError(f"bits_per_frame must be in 1..65536, got {bpf}")

    @classmethod
    def from_codec(cls, codec: Codec) -> StreamConfig:
        return cls(codec.name, codec.sample_rate, codec.frame_samples, codec.bits_per_frame)

    @property
    def frame_duration_s(self) -> float:
        return self.frame_samples / self.sample_rate

    @property
    def config_id(self) -> int:
        """Stable id in 1..255 (0 is left free) derived from the description."""
        key = json.dumps(asdict(self), sort_keys=True).encode()
        return zlib.crc32(key) % 255 + 1

    def to_dict(self) -> dict[str, object]:
        return {"version": STREAM_CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> StreamConfig:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, Mapping):
            raise ValueError(f"stream config must be an object, got {type(data).__name__}")
        if data.get("version") != STREAM_CONFIG_VERSION:
            raise ValueError(f"unsupported stream config version {data.get('version')!r}")
        keys = {"version", "codec", "sample_rate", "frame_samples", "bits_per_frame"}
        if set(data) != keys:
            raise ValueError(f"stream config keys must be {sorted(keys)}, got {sorted(data)}")
        return cls(
            codec=data["codec"],  # type: ignore[arg-type]
            sample_rate=data["sample_rate"],  # type: ignore[arg-type]
            frame_samples=data["frame_samples"],  # type: ignore[arg-type]
            bits_per_frame=data["bits_per_frame"],  # type: ignore[arg-type]
        )
