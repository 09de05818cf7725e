"""Evaluation harness: metric sanity, alignment, and the eval CLI on a small manifest."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from streamcodec import assets
from streamcodec.audio import load_audio
from streamcodec.cli import main as cli_main
from streamcodec.eval.align import align_to, find_lag
from streamcodec.eval.distances import mel_distance
from streamcodec.eval.metrics import Scorers

SNRS_DB = (25.0, 10.0, 0.0)  # decreasing quality


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return load_audio(assets.speech_dir() / "1898-145715-0043.flac")


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    noise *= np.sqrt(np.mean(x**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return np.clip(x + noise, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def scorers() -> Scorers:
    return Scorers(
        ("mel_distance", "stft_distance", "pesq_wb", "stoi", "visqol", "dnsmos", "spk_sim"),
        speech=True,
        whisper_model=None,
    )


@pytest.fixture(scope="module")
def scored(clean, scorers) -> list[dict[str, float]]:
    """Scores of the clean signal against itself, then at decreasing SNR."""
    rows = []
    for deg in [clean] + [_noisy(clean, snr) for snr in SNRS_DB]:
        row = scorers.intrusive(clean, deg)
        row.update(scorers.non_intrusive(deg))
        rows.append(row)
    return rows


@pytest.mark.parametrize(
    ("metric", "higher_is_better"),
    [
        ("mel_distance", False),
        ("stft_distance", False),
        ("pesq_wb", True),
        ("stoi", True),
        ("visqol", True),
        ("spk_sim", True),
        ("dnsmos_bak", True),
        ("dnsmos_ovrl", True),
    ],
)
def test_metric_best_on_identical_and_monotonic_in_snr(scored, metric, higher_is_better):
    values = [r[metric] for r in scored]  # identical first, then decreasing SNR
    sign = 1 if higher_is_better else -1
    s = [sign * v for v in values]
    assert s[0] > s[1], f"{metric}: identical input must score best: {values}"
    assert all(a >= b for a, b in zip(s[:-1], s[1:], strict=True)), (
        f"{metric}: not monotonic in SNR: {values}"
    )
    assert s[1] > s[-1], f"{metric}: insensitive to noise: {values}"


def test_identical_input_hits_the_metric_ceiling(scored):
    best = scored[0]
    assert best["mel_distance"] == 0.0 and best["stft_distance"] == 0.0
    assert best["pesq_wb"] > 4.5
    assert best["stoi"] > 0.999
    assert best["spk_sim"] == pytest.approx(1.0, abs=1e-5)


def test_wer_clean_beats_heavy_noise(clean):
    s = Scorers(("wer",), speech=True, whisper_model=None)
    truth = "WHO NOW SAW HIM FOR THE FIRST TIME IN HIS REAL SHAPE"
    e_clean, n = s.transcriber.errors(truth, s.transcriber.transcribe(clean))
    e_noisy, _ = s.transcriber.errors(truth, s.transcriber.transcribe(_noisy(clean, -10.0)))
    assert n == 12
    assert e_clean <= 2 < e_noisy


def test_wer_normalises_numbers_and_case():
    s = Scorers(("wer",), speech=True, whisper_model=None)
    assert s.transcriber.errors("CHAPTER TWELVE THE BARGAIN", "Chapter 12, the bargain.") == (0, 4)
    assert s.transcriber.errors("A B C D", "a x c") == (2, 4)


def test_distances_reject_empty():
    with pytest.raises(ValueError, match="empty"):
        mel_distance(np.zeros(0, np.float32), np.zeros(10, np.float32))


@pytest.mark.parametrize("lag", [0, 37, 480, -25])
def test_alignment_recovers_a_known_delay(clean, lag):
    deg = np.roll(clean, lag) if lag >= 0 else clean[-lag:]
    assert find_lag(clean, deg, delay_hint=0, max_shift=800) == lag
    aligned, found = align_to(clean, deg, 0, 800)
    assert found == lag and aligned.size == clean.size
    inner = slice(1000, clean.size - 1000)
    np.testing.assert_allclose(aligned[inner], clean[inner])


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="unknown metrics"):
        Scorers(("pesq_nb",), speech=True, whisper_model=None)


def test_eval_cli_on_three_file_manifest(tmp_path, capsys):
    src = assets.speech_dir()
    set_dir = tmp_path / "set"
    (set_dir / "audio").mkdir(parents=True)
    lines = (src / "manifest.tsv").read_text().splitlines()
    keep = [ln for ln in lines[1:] if not ln.startswith("1898-145715-0016")]
    assert len(keep) == 3
    for ln in keep:
        shutil.copy(src / ln.split("\t")[0], set_dir / "audio")
    (set_dir / "manifest.tsv").write_text(
        "\n".join([lines[0]] + ["audio/" + ln for ln in keep]) + "\n"
    )
    out = tmp_path / "out"
    code = cli_main(
        [
            "eval",
            "--codec",
            "codec2-700c",
            "--set",
            str(set_dir),
            "--out",
            str(out),
            "--clips",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    codecs = summary["codecs"]
    assert list(codecs) == ["reference", "codec2-700c"]
    keys = {
        "payload_bps",
        "mel_distance",
        "stft_distance",
        "pesq_wb",
        "stoi",
        "visqol",
        "dnsmos_sig",
        "dnsmos_bak",
        "dnsmos_ovrl",
        "wer",
        "spk_sim",
        "enc_rtf",
        "dec_rtf",
        "files",
    }
    for name, row in codecs.items():
        assert keys <= set(row), name
        assert row["files"] == 3
    c2, ref = codecs["codec2-700c"], codecs["reference"]
    assert 690 < c2["payload_bps"] < 720  # 700 bit/s, plus the zero-padded last frame
    assert ref["payload_bps"] is None and ref["pesq_wb"] > 4.5
    assert ref["pesq_wb"] > c2["pesq_wb"] and ref["stoi"] > c2["stoi"]
    assert 0 <= ref["wer"] <= c2["wer"]
    assert summary["meta"]["files"] == 3 and summary["meta"]["mode"] == "speech"
    rows = (out / "per_file.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2
    report = (out / "report.md").read_text()
    assert "| codec2-700c |" in report and "spectrograms/" in report
    assert len(list((out / "clips").glob("*.flac"))) == 2
    assert len(list((out / "spectrograms").glob("*.png"))) == 1
    assert "codec2-700c" in capsys.readouterr().out


def test_eval_cli_reports_bad_arguments(tmp_path, capsys):
    code = cli_main(
        [
            "eval",
            "--codec",
            "nope",
            "--set",
            str(assets.speech_dir()),
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "unknown codec 'nope'" in capsys.readouterr().err
    code = cli_main(
        [
            "eval",
            "--codec",
            "opus-6k",
            "--set",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "manifest not found" in capsys.readouterr().err


def test_manifest_paths_resolve_from_data_root(tmp_path):
    from streamcodec.manifest import read_manifest

    root = tmp_path / "data"
    (root / "dev" / "x").mkdir(parents=True)
    shutil.copy(assets.demo_clip(), root / "dev" / "x" / "a.flac")
    (root / "dev" / "x" / "manifest.tsv").write_text(
        "path\tduration_s\tspeaker\tlabel_or_transcript\tlicence\tsource\n"
        "dev/x/a.flac\t9.330\tspk:1\tHELLO\tCC-BY-4.0\tsomewhere\n"
    )
    (entry,) = read_manifest(root / "dev" / "x")
    assert entry.path == (root / "dev" / "x" / "a.flac").resolve()
    assert entry.label == "HELLO" and entry.duration_s == pytest.approx(9.33)
    (root / "bad.tsv").write_text("path\tfoo\n")
    with pytest.raises(ValueError, match="lacks columns"):
        read_manifest(root / "bad.tsv")


def test_parallel_jobs_give_the_same_scores(tmp_path):
    from streamcodec.eval.harness import EvalConfig, run_eval

    def scores(jobs: int) -> dict:
        cfg = EvalConfig(
            codecs=("opus-6k",),
            set_dir=assets.speech_dir(),
            out_dir=tmp_path / f"jobs{jobs}",
            limit=2,
            metrics=("mel_distance", "stoi"),
            clips=0,
            progress=False,
        )
        return run_eval(cfg, jobs=jobs)["codecs"]

    one, two = scores(1), scores(2)
    for name in ("reference", "opus-6k"):
        for key in ("mel_distance", "stoi", "payload_bps", "files"):
            assert one[name][key] == two[name][key], (name, key)
