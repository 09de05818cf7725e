"""`streamcodec simulate` end to end on a tiny grid, and the reliability cases (virtual clock)."""

from __future__ import annotations

import json
import math

import pytest

from streamcodec import assets
from streamcodec.cli import main
from streamcodec.linksim import sweep


def test_default_codecs_follow_the_available_codecs(monkeypatch):
    def listing(*names):
        return lambda available_only=False: list(names) if available_only else ["voice-700"]

    monkeypatch.setattr(sweep, "list_codecs", listing("opus-6k", "codec2-700c", "amrnb-4.75"))
    assert sweep.default_codecs() == ("codec2-700c", "opus-6k")  # voice-700 without weights
    monkeypatch.setattr(sweep, "list_codecs", listing("opus-6k", "voice-700", "codec2-700c"))
    assert sweep.default_codecs() == ("voice-700", "codec2-700c", "opus-6k")


def test_speech_clips_pick_distinct_speakers_and_trim():
    clips = sweep.speech_clips(assets.speech_dir(), 2, 2.5)
    assert len(clips) == 2 and clips[0][0] != clips[1][0]
    assert all(0 < pcm.size <= 40000 for _, pcm in clips)
    long = sweep.looped([pcm for _, pcm in clips], 7.0)
    assert long.size == 7 * 16000


def test_simulate_cli_writes_a_report_with_plots_audio_and_table(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sim"
    rc = main(
        [
            "simulate",
            "--out",
            str(out),
            "--codecs",
            "codec2-700c",
            "--rates",
            "16000",
            "--losses",
            "0,30",
            "--clip-seconds",
            "2.5",
            "--set",
            str(assets.speech_dir()),
            "--no-reliability",
            "--no-concurrency",
            "--no-clock-check",
            "--audio-seconds",
            "1",
            "--metrics",
            "mel_distance,stft_distance",
        ]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    clean, lossy = summary["grid"]
    assert (clean["loss"], lossy["loss"]) == (0.0, 0.3)
    assert clean["metrics"]["link_drop_pct"] == 0 and lossy["metrics"]["link_drop_pct"] > 10
    assert clean["metrics"]["delivered_pct"] > 95
    assert lossy["metrics"]["delivered_pct"] < clean["metrics"]["delivered_pct"]
    assert lossy["metrics"]["mel_distance"] > clean["metrics"]["mel_distance"]
    # the clean call is as good as the offline decode (bit-exact transport)
    off = summary["offline"]["codec2-700c"]["mel_distance"]
    assert clean["metrics"]["mel_distance"] == pytest.approx(off, abs=0.05)
    # planned to fit the link, leaving the packetiser's 15 % headroom free
    assert 8000 < clean["metrics"]["wire_bps"] < 0.85 * 16000
    report = (out / "report.md").read_text()
    assert "| codec2-700c | 16 kbit/s | 30% |" in report
    for rel in ("plots/quality_vs_loss.png", "spectrograms/clip0.png", "audio/reference.flac"):
        assert f"({rel})" in report and (out / rel).stat().st_size > 1000
    assert (out / "grid.csv").read_text().startswith("codec,rate_bps,loss,")


def test_reliability_cases_stay_connected_on_the_virtual_clock():
    clips = [pcm for _, pcm in sweep.speech_clips(assets.speech_dir(), 2, 3.0)]
    results = sweep.run_reliability(
        sweep.reliability_runs(quick=True),
        "codec2-700c",
        clips,
        virtual_clock=True,
        metrics=("mel_distance",),
    )
    by_name = {r.run.name: r for r in results}
    assert set(by_name) == {"bursty-30", "outage-5s", "slow-2k"}
    for r in results:
        assert r.record.stayed_connected, r.run.name
    bursty = by_name["bursty-30"].metrics
    assert 15 < bursty["link_drop_pct"] < 45
    outage = by_name["outage-5s"].metrics
    assert outage["recovery_s"] < 1.0 and outage["delivered_after_pct"] > 90
    slow = by_name["slow-2k"].metrics
    assert slow["frames_per_message"] >= 25  # interval >= the 1 s RTT
    assert slow["wire_bps"] < 2000 and slow["delivered_pct"] > 80
    assert not math.isnan(slow["latency_p50_ms"]) and slow["latency_p50_ms"] > 1000
