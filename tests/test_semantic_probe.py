"""`streamcodec probe` on a tiny synthetic labelled set, folds, features and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamcodec.audio import save_audio
from streamcodec.cli import main
from streamcodec.cli.probe import is_classification_set, speaker_folds, utterance_features
from streamcodec.semantic.sources import load_source, mel_features
from streamcodec.semantic.tokenizer import save_codebooks
from streamcodec.training.kmeans import KMeansConfig, minibatch_kmeans

TONES_HZ = {"low": 300.0, "mid": 1200.0, "high": 3500.0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _make_set(folder: Path, labels_from_audio: bool, seed: int) -> Path:
    """5 speakers x 3 classes x 4 files of 0.3 s tones (class = pitch) in speaker noise."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    t = np.arange(4800) / 16000
    lines = ["path\tduration_s\tspeaker\tlabel_or_transcript\tlicence\tsource"]
    for spk in range(5):
        noise = 0.01 * (spk + 1)
        for label, hz in TONES_HZ.items():
            for k in range(4):
                f = hz * rng.uniform(0.95, 1.05)
                pcm = 0.3 * np.sin(2 * np.pi * f * t) + noise * rng.standard_normal(t.size)
                name = f"s{spk}_{label}_{k}.wav"
                save_audio(folder / name, pcm.astype(np.float32))
                lab = label if labels_from_audio else rng.choice(list(TONES_HZ))
                lines.append(f"{name}\t0.300\tspk{spk}\t{lab}\tCC0-1.0\tsynthetic")
    (folder / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def probe_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("probe")
    good = _make_set(root / "tones", True, 0)
    shuffled = _make_set(root / "shuffled", False, 1)
    # a 16-entry raw-log-mel codebook fitted on the tones themselves
    from streamcodec.audio import load_audio

    pcm = [load_audio(p) for p in sorted(good.glob("*.wav"))]
    x = torch.from_numpy(np.stack(pcm))
    feats = mel_features(x, 2).reshape(-1, 160)
    centers, _ = minibatch_kmeans(feats, KMeansConfig(n_clusters=16, batch_size=256, epochs=5))
    bdir = root / "baselines"
    (bdir / "mel").mkdir(parents=True)
    save_codebooks({"semantic-700": centers}, bdir / "mel" / "codebooks.safetensors")
    return good, shuffled, bdir


def test_probe_cli_end_to_end(probe_dirs, tmp_path: Path) -> None:
    good, shuffled, bdir = probe_dirs
    out = tmp_path / "out"
    args = ["probe", "--codec", "mel-kmeans", "--set", str(good), "--set", str(shuffled)]
    rc = main(args + ["--out", str(out), "--baseline-dir", str(bdir), "--folds", "5"])
    assert rc == 0
    report = json.loads((out / "probe.json").read_text())
    tones = report["results"]["mel-kmeans"]["tones"]
    assert tones["task"] == "classification" and tones["classes"] == 3
    assert tones["chance_uniform"] == pytest.approx(1 / 3)
    assert tones["bag"]["accuracy"] > 0.9 and tones["embed"]["accuracy"] > 0.9
    assert len(tones["bag"]["fold_accuracy"]) == 5
    assert 0 < tones["usage"]["usage"] <= 1
    # labels unrelated to the audio: nothing to learn
    shuf = report["results"]["mel-kmeans"]["shuffled"]
    assert shuf["bag"]["accuracy"] < 0.6 and shuf["embed"]["accuracy"] < 0.6
    assert "| mel-kmeans | tones | 3 |" in (out / "probe.md").read_text()


def test_speaker_folds_are_disjoint() -> None:
    spk = [f"s{i % 7}" for i in range(70)]
    folds = speaker_folds(spk, 5)
    assert len(folds) == 5
    for tr, te in folds:
        assert not {spk[i] for i in tr} & {spk[i] for i in te}
    assert len(speaker_folds([f"s{i % 3}" for i in range(30)], 5)) == 3  # leave-one-out
    with pytest.raises(ValueError):
        speaker_folds(["a"] * 10, 5)


def test_classification_set_detection() -> None:
    assert is_classification_set(["yes", "no"] * 10)
    assert not is_classification_set([f"sentence {i}" for i in range(20)])
    assert not is_classification_set(["yes", ""] * 10)


def test_utterance_features() -> None:
    ids = np.array([0, 2, 2])
    emb = np.array([[0.0, 1.0], [2.0, 3.0], [2.0, 3.0]], np.float32)
    f = utterance_features([(ids, emb)], 4)
    assert f["bag"].tolist() == [[1.0, 0.0, 2.0, 0.0]]
    assert f["embed"].shape == (1, 4)
    with pytest.raises(ValueError):
        utterance_features([(np.zeros(0, np.int64), np.zeros((0, 2), np.float32))], 4)


def test_probe_bad_inputs(probe_dirs, tmp_path: Path) -> None:
    good, _, bdir = probe_dirs
    base = ["--out", str(tmp_path), "--baseline-dir", str(bdir)]
    assert main(["probe", "--codec", "nope", "--set", str(good), *base]) == 2
    assert main(["probe", "--codec", "mel-kmeans", "--set", str(tmp_path), *base]) == 2
    assert main(["probe", "--codec", "mel-kmeans-350", "--set", str(good), *base]) == 2
    with pytest.raises(FileNotFoundError, match="train kmeans"):
        load_source("codec2-700c", baseline_dir=tmp_path)
