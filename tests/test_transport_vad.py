"""Energy VAD for DTX: silence off, speech on, hangover after speech."""

from __future__ import annotations

import numpy as np
import pytest

from streamcodec.transport.vad import EnergyVad, VadConfig


def test_vad_silence_speech_and_hangover():
    rng = np.random.default_rng(0)
    vad = EnergyVad(0.04, VadConfig(hangover_ms=120))
    quiet = [vad(1e-4 * rng.standard_normal(640).astype(np.float32)) for _ in range(10)]
    assert not any(quiet)
    tone = 0.3 * np.sin(np.arange(640) * 0.2).astype(np.float32)
    assert all(vad(tone) for _ in range(5))
    after = [vad(1e-4 * rng.standard_normal(640).astype(np.float32)) for _ in range(6)]
    assert after == [True, True, True, False, False, False]  # 120 ms / 40 ms hangover


def test_vad_noise_floor_tracks_steady_noise():
    rng = np.random.default_rng(1)
    vad = EnergyVad(0.02, VadConfig(hangover_ms=0))
    noise = [0.01 * rng.standard_normal(320).astype(np.float32) for _ in range(100)]
    decisions = [vad(x) for x in noise]
    assert decisions[0]  # -40 dBFS is above the initial floor + margin ...
    assert not any(decisions[75:])  # ... but steady noise is not speech once tracked (1.5 s)
    assert vad(0.3 * np.ones(320, dtype=np.float32))


def test_vad_rejects_bad_config():
    with pytest.raises(ValueError):
        VadConfig(margin_db=-1)
    with pytest.raises(ValueError):
        EnergyVad(0.0)
