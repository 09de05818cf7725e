"""Compare a trained vocoder with the bundled one and ship it if it is better.

    python benchmarks/ship_vocoder.py OUT_DIR_OF_A_TRAINING_RUN [--limit 8] [--force]

Copy-synthesis (log-mel -> vocoder) on the first ``--limit`` files of ``--set``
(default ``../shared/data/dev/speech``): mean log-mel L1 distance and PESQ-WB
(if ``pesq`` is installed) for the candidate and for the weights now in
``streamcodec/weights/mel-vocoder``. The candidate replaces them when its PESQ
(or, without PESQ, its mel distance) is better, or with ``--force``; then
``MODEL_CARD.md`` is rewritten from the candidate's ``config.json`` training record.
Writes ``benchmarks/results/vocoder_quickcheck.json`` either way and, when it ships, the
loss curve (``vocoder_losses.{csv,png}``; a run that continued the shipped weights is
appended to their curve).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from streamcodec.audio import load_audio
from streamcodec.manifest import read_manifest
from streamcodec.vocoder import Vocoder, bundled_weights_dir

REPO = Path(__file__).resolve().parents[1]
MAX_FILE_BYTES = 15 * 2**20


def quick_check(vocoder: Vocoder, files: list[Path]) -> dict:
    """Mean log-mel L1 and PESQ-WB of copy-synthesis over ``files``."""
    try:
        from pesq import pesq
    except ImportError:
        pesq = None
    mels, pesqs = [], []
    for f in files:
        x = torch.from_numpy(load_audio(f))[None]
        y = vocoder.copy_synthesis(x)
        n = y.shape[-1]
        mels.append(float((vocoder.mel(y) - vocoder.mel(x[:, :n])).abs().mean()))
        if pesq is not None:
            pesqs.append(float(pesq(16000, x[0, :n].numpy(), y[0].numpy(), "wb")))
    return {
        "files": len(files),
        "mel_l1": float(np.mean(mels)),
        "pesq_wb": float(np.mean(pesqs)) if pesqs else None,
    }


def model_card(v: Vocoder, check: dict, set_name: str) -> str:
    cfg, info = v.cfg, v.training_info
    sessions = info.get("history", [])
    lines = [
        "# mel-vocoder",
        "",
        "Streaming neural vocoder: 80-band log-mel (16 kHz, hop 10 ms, causal framing; "
        "`streamcodec.features.LogMel`) -> 16 kHz waveform. Vocos-style: causal ConvNeXt "
        f"backbone ({cfg.num_layers} blocks, width {cfg.dim}, MLP {cfg.intermediate_dim}, "
        f"depthwise kernel {cfg.kernel_size}) and an iSTFT head (n_fft {cfg.n_fft}, hop "
        f"{cfg.hop_samples}, Hann, overlap-add). Streaming delay {cfg.delay_samples} samples "
        f"({1000 * cfg.delay_samples / cfg.mel.sample_rate:.0f} ms; algorithmic latency "
        f"{cfg.latency_ms:.0f} ms with the 10 ms hop); streamed output equals offline output.",
        *(
            [
                "",
                "Integrated phase (`integrate_phase`): besides each frame's log-magnitude and "
                "phase offset, the head predicts a per-bin phase step; the steps accumulate "
                "over frames (float64, carried in the stream state), so a steady tone keeps "
                "its pitch instead of being pulled onto the 100 Hz hop grid "
                "(`benchmarks/vocoder_pitch.py`).",
            ]
            if cfg.integrate_phase
            else []
        ),
        "",
        f"- parameters: {v.generator.num_parameters():,} (fp16 in `model.safetensors`)",
        f"- training steps: {info.get('step')} ({info.get('gan_steps')} with the adversarial "
        "losses: multi-period + multi-resolution discriminators, hinge loss, feature "
        "matching; all steps: multi-resolution log-mel L1)",
        f"- audio seen: {info.get('audio_hours', 0):.2f} h; training wall time "
        f"{info.get('wall_hours', 0):.2f} h",
        "",
        "Sessions:",
        "",
        "| steps | preset | hardware | wall (s) | data | data hours | stop |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sessions:
        data = ", ".join(Path(m).parent.name for m in s.get("data", []))
        if s.get("phase_conversion") == "fresh":
            data += "; from the frame-phase model: backbone and magnitude kept, phase re-learnt"
        elif s.get("phase_conversion"):
            data += "; converted from the frame-phase model (same output)"
        if s.get("pairs"):
            data += (
                f"; {s.get('pairs_ratio', 0):.0%} of batches: {s.get('pairs_codec')} decoded "
                f"mels ({s.get('pairs_hours')} h)"
            )
        lines.append(
            f"| {s.get('start_step')}-{s.get('end_step')} | {s.get('preset')} | "
            f"{s.get('device')} | {s.get('wall_s')} | {data} | {s.get('data_hours')} | "
            f"{s.get('stop') or 'running (checkpoint)'} |"
        )
    pesq_s = "n/a" if check["pesq_wb"] is None else f"{check['pesq_wb']:.2f}"
    lines += [
        "",
        "Data: the project corpus `train/` (speech, music, noise; Opus-coded; see the "
        "corpus data card), random crops with random gain and noise mixing, Gaussian noise "
        "on the input log-mel (robustness to generated mels). Never `dev/` or `probe/`.",
        *(
            [
                "",
                "Fine-tuning on decoded mels (sessions with a voice codec in the data column): "
                "part of the batches pair a voice codec's decoded log-mel of a `train/speech` "
                "file (`streamcodec train vocoder-pairs`) with the original waveform as the "
                "target, so the vocoder learns the decoder's smoother mels "
                "(`streamcodec train vocoder --pairs`). Its mel loss in the curve "
                "(`benchmarks/results/vocoder_losses.csv`) is higher than before: the decoded "
                "mel does not hold all of the target's detail.",
            ]
            if any(s.get("pairs") for s in sessions)
            else []
        ),
        "",
        f"Quick check (copy-synthesis, first {check['files']} files of `{set_name}`): "
        f"log-mel L1 {check['mel_l1']:.3f}, PESQ-WB {pesq_s}. Full numbers: "
        "`streamcodec eval --codec mel-vocoder --set ../shared/data/dev/speech ...`.",
        "",
        "Training recipe: `streamcodec train vocoder` (CPU) or "
        "`benchmarks/gpu_train_vocoder.sh OUT BUDGET_S` (GPU); continue training from these "
        "files with `--init streamcodec/weights/mel-vocoder`.",
        "",
    ]
    return "\n".join(lines)


def merge_losses(run_csv: Path, shipped_csv: Path) -> None:
    """Write ``run_csv`` to ``shipped_csv``; a run that continued the shipped weights
    (``--init``: its CSV starts past step 1) keeps the shipped curve's earlier rows."""
    with open(run_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0]) if rows else []
    first = min((int(r["step"]) for r in rows), default=0)
    earlier = []
    if first > 1 and shipped_csv.exists():
        with open(shipped_csv, newline="") as fh:
            earlier = [r for r in csv.DictReader(fh) if int(r["step"]) < first]
    with open(shipped_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows([*earlier, *rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("candidate", type=Path, help="directory with model.safetensors + config.json")
    ap.add_argument("--set", type=Path, default=REPO.parent / "shared/data/dev/speech")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--force", action="store_true", help="ship even if not better")
    ap.add_argument("--dry-run", action="store_true", help="compare only")
    args = ap.parse_args()
    torch.set_num_threads(2)
    for name in ("model.safetensors", "config.json"):
        size = (args.candidate / name).stat().st_size
        if size > MAX_FILE_BYTES:
            raise SystemExit(f"{args.candidate / name} is {size} bytes (> 15 MiB)")
    files = [e.path for e in read_manifest(args.set)[: args.limit]]
    cand = Vocoder.from_pretrained(args.candidate)
    result = {"set": str(args.set), "candidate": str(args.candidate)}
    result["candidate_check"] = quick_check(cand, files)
    dest = bundled_weights_dir("mel-vocoder")
    cur = None
    if (dest / "model.safetensors").exists():
        try:
            cur = Vocoder.from_pretrained(dest)
            result["bundled_check"] = quick_check(cur, files)
        except (ValueError, RuntimeError) as exc:  # incompatible older weights
            result["bundled_error"] = str(exc)
    print(json.dumps(result, indent=2))
    key = "pesq_wb" if result["candidate_check"]["pesq_wb"] is not None else "mel_l1"
    better = cur is None or "bundled_check" not in result
    if not better:
        c, b = result["candidate_check"][key], result["bundled_check"][key]
        better = c > b if key == "pesq_wb" else c < b
    ship = (better or args.force) and not args.dry_run
    result["shipped"] = ship
    out = REPO / "benchmarks/results/vocoder_quickcheck.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if ship and (args.candidate / "losses.csv").exists():  # the loss curve, beside the check
        from streamcodec.training.vocoder import _plot

        merge_losses(args.candidate / "losses.csv", out.with_name("vocoder_losses.csv"))
        _plot(out.with_name("vocoder_losses.csv"), out.with_name("vocoder_losses.png"))
    if ship:
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "config.json"):
            shutil.copyfile(args.candidate / name, dest / name)
        card = model_card(
            cand, result["candidate_check"], f"{args.set.parent.name}/{args.set.name}"
        )
        (dest / "MODEL_CARD.md").write_text(card)
        print(f"shipped {args.candidate} -> {dest}")
    elif args.dry_run:
        verdict = "better than" if better else "no better than"
        print(f"dry run, not shipped: the candidate's {key} is {verdict} the bundled weights'")
    else:
        print("not shipped (the bundled weights are as good or better; --force to override)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
