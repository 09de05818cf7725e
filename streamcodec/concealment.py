"""Packet-loss concealment for codecs without their own: repeat the last frame and fade out."""

from __future__ import annotations

import numpy as np


class RepeatFade:
    """Remember the last decoded frame; on a loss return it attenuated, fading to silence.

    The ``k``-th consecutive lost frame is the last good frame times ``decay ** k``;
    after ``max_repeats`` losses the output is silence. Each good frame resets it.
    """

    def __init__(self, frame_samples: int, decay: float = 0.5, max_repeats: int = 3) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.frame_samples = frame_samples
        self.decay = decay
        self.max_repeats = max_repeats
        self._last = np.zeros(frame_samples, dtype=np.float32)
        self._lost = 0

    def good(self, pcm: np.ndarray) -> np.ndarray:
        """Record a correctly decoded frame and return it unchanged."""
        if pcm.size == self.frame_samples:
            self._last = pcm.astype(np.float32, copy=True)
        self._lost = 0
        return pcm

    def conceal(self) -> np.ndarray:
        """PCM for one lost frame: ``[frame_samples] float32``."""
        self._lost += 1
        if self._lost > self.max_repeats:
            return np.zeros(self.frame_samples, dtype=np.float32)
        return (self._last * self.decay**self._lost).astype(np.float32)
