"""From a trained MAE encoder to shipped semantic tokenizers, measured.

Steps (each skipped when its output exists, so the script resumes):

1. ``semantic_layers.py``: pick the feature blocks on train-split Speech Commands;
2. write the encoder with that choice into ``WORK/weights`` (config.json + encoder);
3. ``streamcodec train kmeans`` on the encoder's features of ``train/`` (all three rates);
4. ``streamcodec probe`` of ``semantic-350/700/1400`` and the baselines on
   ``probe/keywords``, ``probe/digits`` and ``dev/speech`` (codebook usage);
5. with ``--ship``: copy the weights into ``streamcodec/weights/semantic/`` and the
   results into ``benchmarks/results/`` (``semantic_layers.json``,
   ``semantic_kmeans.json``, ``probe_semantic/``).

    python benchmarks/semantic_pipeline.py --encoder-dir RUN/export --work /tmp/sem_ship [--ship]

Baseline codebooks (``mel-kmeans-*``, ``codec2-700c``) must have been fitted first with
``streamcodec train kmeans --features mel|codec2-700c`` (see streamcodec.semantic.sources).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SHIP = REPO / "streamcodec" / "weights" / "semantic"
DATA = Path("/work/shared/data")
SOURCES = "semantic-350,semantic-700,semantic-1400,mel-kmeans-350,mel-kmeans-700,mel-kmeans-1400"


def sh(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def model_card(
    cfg: dict, probe_md: str, n_params: int, encoder_bytes: int, codebook_bytes: int
) -> str:
    """MODEL_CARD.md text from the shipped config.json and the probe table."""
    e, t, k = cfg["encoder"], cfg.get("training", {}), cfg.get("codebooks", {})
    chunk_ms = e["chunk_tokens"] * e["patch_frames"] * 10
    la_ms = sum(e["lookahead_chunks"]) * chunk_ms
    seg_s = e["segment_chunks"] * chunk_ms / 1000
    rates = k.get("rates", {})
    rate_lines = "\n".join(
        f"| {name} | {r['points']} | {r['used']} | {r['perplexity']:.0f} | {r['usage']:.3f} | "
        f"{r['fit_s']:.0f} |"
        for name, r in sorted(rates.items())
    )
    mae = t.get("mae", {})
    return f"""# Semantic tokenizer (streamcodec.semantic) — model card

Files: `config.json` (format version {cfg["format_version"]}, encoder config, training and
codebook records), `encoder.safetensors` ({encoder_bytes / 1e6:.1f} MB fp16),
`codebooks.safetensors` ({codebook_bytes / 1e6:.1f} MB fp16: one `[8192, {e["d_model"]}]`
codebook per rate). Load with `streamcodec.semantic.load_tokenizer("semantic-700")`.

## Model
- Block-causal ViT over 20 ms log-mel patches ({e["patch_frames"]} frames x {e["mel"]["n_mels"]}
  mel bins, 16 kHz, 10 ms hop, causal framing): d_model {e["d_model"]}, {e["n_heads"]} heads,
  {e["n_layers"]} blocks, MLP x{e["mlp_ratio"]}, rotary positions; ~{n_params / 1e6:.2f} M
  parameters.
- Attention: chunks of {chunk_ms} ms, look-ahead {e["lookahead_chunks"]} chunks per block
  ({la_ms} ms in all); the context slides by {seg_s:.2f} s segments (a query sees
  {seg_s:.2f}-{2 * seg_s:.2f} s of past keys per block), so the per-stream KV cache is bounded.
- Algorithmic latency: semantic-1400 (20 ms frames) {chunk_ms + la_ms} ms, semantic-700
  (40 ms) {max(40, chunk_ms) + la_ms} ms, semantic-350 (80 ms) {80 + la_ms} ms.
- Feature: mean of parameter-free LayerNorm'd outputs of blocks {e["feature_layers"]}
  ({cfg.get("feature_layers_chosen_by", "")}); token frames mean-pool 1/2/4 tokens.

## Pretraining (masked autoencoder)
- Recipe `streamcodec train mae` (streamcodec/training/mae.py): 4 s crops, 75 % of the 40 ms
  chunks masked, encoder on visible chunks only (original positions), 2-block decoder
  (d {mae.get("decoder_dim")}), MSE on per-patch normalised masked patches; gain and noise
  augmentation.
- Data: {", ".join(t.get("manifests", [])) or "train/ speech, music, noise"}
  ({t.get("corpus_hours", "?")} h, {t.get("corpus_files", "?")} files); never dev/ or probe/.
- Steps {t.get("steps")}, batch {mae.get("batch_size")}, peak lr {mae.get("lr")},
  audio seen {t.get("audio_hours_seen")} h, wall time {t.get("wall_s", 0) / 3600:.2f} h,
  hardware: {t.get("hardware", "?")}.

## Codebooks (frozen k-means)
- {k.get("fit", "")}; features of {k.get("hours")} h of random train/ crops, at most
  {k.get("max_points")} points per rate, {k.get("config", {}).get("epochs")} epochs of
  mini-batch updates, then one Lloyd step.

| rate | points | used | perplexity | usage (ppl / 8192) | fit (s) |
|---|---|---|---|---|---|
{rate_lines}

## Probe (streamcodec probe; speaker-disjoint folds)
{probe_md}
## Licence of the training data
Weights are derived from `train/` of the shared corpus: LibriSpeech and Speech Commands
(CC BY 4.0), speechocean762 (Apache-2.0), LJ Speech (public domain), Weresax and body
percussion (CC0), Splendid Grand Piano (public domain). Attribution as in the corpus data card.

## Limitations
Small model trained on ~9 h of audio with little compute; English read speech dominates.
Digits in `probe/` are 8 kHz (band-limited), unlike the training audio.
"""


def plot_loss(csv_path: Path, png: Path) -> None:
    """MAE loss (masked-patch MSE) against audio hours seen."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    hours = [float(r["audio_h"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(hours, loss, lw=0.8)
    ax.set_xlabel("audio seen (h)")
    ax.set_ylabel("masked-patch MSE (normalised)")
    ax.set_title(f"semantic encoder MAE pretraining ({rows[-1]['step']} steps)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoder-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--hours", type=float, default=2.0, help="train/ audio for k-means")
    ap.add_argument("--epochs", default="2")
    ap.add_argument("--max-points", default="200000")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--sources", default=SOURCES, help="token sources to probe")
    ap.add_argument("--clusters", default="8192")
    ap.add_argument("--layer-files", default="1200", help="clips for the layer choice")
    ap.add_argument("--max-files", default=None, help="probe only N files per set (dry runs)")
    ap.add_argument("--codec2", action="store_true", help="also probe codec2-700c")
    ap.add_argument("--layers", default=None, help="skip the search: comma-separated blocks")
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--extra-probe", default=None, help="merge this probe.json's sources")
    ap.add_argument("--loss-csv", default=None, help="the MAE run's loss.csv (copied + plotted)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable

    layers_json = work / "semantic_layers.json"
    if args.layers is None and not layers_json.exists():
        sh(
            py,
            str(REPO / "benchmarks" / "semantic_layers.py"),
            "--encoder-dir",
            args.encoder_dir,
            "--out",
            str(work),
            "--max-files",
            args.layer_files,
            "--threads",
            args.threads,
        )
    if args.layers is not None:
        layers = [int(v) for v in args.layers.split(",")]
    else:
        layers = json.loads(layers_json.read_text())["best"]["layers"]

    weights = work / "weights"
    weights.mkdir(exist_ok=True)
    cfg = json.loads((Path(args.encoder_dir) / "config.json").read_text())
    cfg["encoder"]["feature_layers"] = layers
    cfg["feature_layers_chosen_by"] = (
        "benchmarks/semantic_layers.py (train-split Speech Commands, speaker-disjoint CV)"
        if args.layers is None
        else "given"
    )
    (weights / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(Path(args.encoder_dir) / "encoder.safetensors", weights / "encoder.safetensors")
    # keep only the blocks up to the feature layer: same features, less compute and weight
    from streamcodec.semantic.tokenizer import load_encoder, save_encoder

    full = load_encoder(weights)
    trunk = full.feature_trunk()
    if trunk is not full:
        cfg["encoder"] = trunk.cfg.to_dict()
        cfg["trunk"] = {"from_layers": full.cfg.n_layers, "kept_layers": trunk.cfg.n_layers}
        save_encoder(trunk, weights, {k: v for k, v in cfg.items() if k not in ("encoder",)})

    if not (weights / "codebooks.safetensors").exists():
        sh(
            py,
            "-m",
            "streamcodec",
            "train",
            "kmeans",
            "--features",
            "encoder",
            "--encoder-dir",
            str(weights),
            "--out",
            str(work / "kmeans"),
            "--hours",
            str(args.hours),
            "--epochs",
            args.epochs,
            "--max-points",
            args.max_points,
            "--clusters",
            args.clusters,
            "--threads",
            args.threads,
            "--no-progress",
        )
        shutil.copyfile(
            work / "kmeans" / "codebooks.safetensors", weights / "codebooks.safetensors"
        )
    kmeans = json.loads((work / "kmeans" / "kmeans.json").read_text())
    cfg["codebooks"] = {
        "file": "codebooks.safetensors",
        "fit": "streamcodec.training.kmeans (own torch mini-batch k-means, k-means++ seeding)",
        **kmeans,
    }
    (weights / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    probe_out = work / "probe_semantic"
    if not (probe_out / "probe.md").exists():
        sources = args.sources + (",codec2-700c" if args.codec2 else "")
        limit = ["--max-files", args.max_files] if args.max_files else []
        sh(
            py,
            "-m",
            "streamcodec",
            "probe",
            "--codec",
            sources,
            "--weights-dir",
            str(weights),
            "--set",
            str(DATA / "probe" / "keywords"),
            "--set",
            str(DATA / "probe" / "digits"),
            "--set",
            str(DATA / "dev" / "speech"),
            "--out",
            str(probe_out),
            *limit,
        )
    if args.extra_probe:  # results of other sources probed separately (same sets, same CLI)
        from streamcodec.cli.probe import markdown

        report = json.loads((probe_out / "probe.json").read_text())
        extra = json.loads((Path(args.extra_probe) / "probe.json").read_text())
        for name, sets in extra["results"].items():
            report["results"].setdefault(name, sets)
        (probe_out / "probe.json").write_text(json.dumps(report, indent=2) + "\n")
        (probe_out / "probe.md").write_text(markdown(report))
    print((probe_out / "probe.md").read_text())

    if args.ship:
        SHIP.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "encoder.safetensors", "codebooks.safetensors"):
            shutil.copyfile(weights / name, SHIP / name)
        from safetensors.torch import load_file

        n_params = sum(v.numel() for v in load_file(str(weights / "encoder.safetensors")).values())
        card = model_card(
            cfg,
            (probe_out / "probe.md").read_text(),
            n_params,
            (weights / "encoder.safetensors").stat().st_size,
            (weights / "codebooks.safetensors").stat().st_size,
        )
        (SHIP / "MODEL_CARD.md").write_text(card)
        RESULTS.mkdir(parents=True, exist_ok=True)
        if layers_json.exists():
            shutil.copyfile(layers_json, RESULTS / "semantic_layers.json")
        shutil.copyfile(work / "kmeans" / "kmeans.json", RESULTS / "semantic_kmeans.json")
        shutil.copytree(probe_out, RESULTS / "probe_semantic", dirs_exist_ok=True)
        if args.loss_csv:
            shutil.copyfile(args.loss_csv, RESULTS / "semantic_mae_loss.csv")
            plot_loss(Path(args.loss_csv), RESULTS / "semantic_mae_loss.png")
        from streamcodec.semantic.sources import BASELINE_DIR

        for feat in ("mel", "codec2-700c"):
            report = BASELINE_DIR / feat / "kmeans.json"
            if report.exists():
                shutil.copyfile(report, RESULTS / f"semantic_kmeans_baseline_{feat}.json")
        print(f"shipped to {SHIP}")


if __name__ == "__main__":
    main()
