"""A small energy voice-activity detector for discontinuous transmission (DTX).

Per codec frame: level = RMS in dBFS. A frame is *speech* when its level is above
both an absolute floor and the tracked noise floor plus a margin; the noise floor
follows quiet frames quickly and rises slowly (``noise_rise_db_per_s``). A hangover
keeps the decision active a little after speech so word endings are not clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VadConfig:
    #: frames quieter than this are never speech
    floor_dbfs: float = -55.0
    #: speech must be this far above the noise floor
    margin_db: float = 9.0
    #: how fast the noise floor may rise during long loud stretches
    noise_rise_db_per_s: float = 10.0
    #: keep transmitting this long after the last speech frame
    hangover_ms: float = 240.0

    def __post_init__(self) -> None:
        if self.margin_db < 0 or self.hangover_ms < 0 or self.noise_rise_db_per_s < 0:
            raise ValueError(f"VadConfig values must be >= 0, got {self}")


class EnergyVad:
    """Stateful per-stream voice-activity decision, one call per codec frame."""

    def __init__(self, frame_duration_s: float, config: VadConfig = VadConfig()) -> None:
        if frame_duration_s <= 0:
            raise ValueError(f"frame_duration_s must be > 0, got {frame_duration_s}")
        self.config = config
        self.frame_duration_s = frame_duration_s
        self._noise_db = config.floor_dbfs
        self._hang_frames_left = 0
        self._hangover_frames = int(round(config.hangover_ms / 1000.0 / frame_duration_s))

    def __call__(self, pcm: np.ndarray) -> bool:
        """``pcm: [T] float32`` of one frame -> True when the frame should be sent."""
        pcm = np.asarray(pcm, dtype=np.float32)
        rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if pcm.size else 0.0
        level_db = 20.0 * np.log10(max(rms, 1e-9))
        cfg = self.config
        speech = level_db > max(cfg.floor_dbfs, self._noise_db + cfg.margin_db)
        if level_db < self._noise_db:
            self._noise_db = max(level_db, -100.0)
        else:
            self._noise_db += cfg.noise_rise_db_per_s * self.frame_duration_s
        if speech:
            self._hang_frames_left = self._hangover_frames
            return True
        if self._hang_frames_left > 0:
            self._hang_frames_left -= 1
            return True
        return False
