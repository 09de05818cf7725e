"""Vocoders A/B on a voice codec's decoded mels: which vocoder should the codec ship with?

Decodes the first ``--limit`` files of a dev set to log-mel once with the codec (streaming
encode + streaming flow decoder, the codec's default sampling and noise seed; cached in
``--cache``), then synthesises every file with each vocoder (offline synthesis: equal
to the streamed output, see the vocoder's tests) and scores it with the metrics of
``streamcodec eval``. The first vocoder is the reference of the paired differences.
With the bundled vocoder first, its row equals ``streamcodec eval --codec voice-700`` on
the same files (same mel, same synthesis, same scorers): a quick check, not a report.

    python benchmarks/ab_voice_vocoder.py --codec voice-700 --limit 24 \\
        --vocoder mel-vocoder --vocoder runs/ft/ --out runs/ab.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamcodec.audio import load_audio  # noqa: E402
from streamcodec.eval.align import align_to  # noqa: E402
from streamcodec.eval.metrics import Scorers  # noqa: E402
from streamcodec.manifest import read_manifest  # noqa: E402
from streamcodec.training.vocoder_pairs import decode_mel  # noqa: E402
from streamcodec.vocoder.inference import Vocoder, bundled_weights_dir  # noqa: E402


def decoded_mels(codec_name: str, paths: list[Path], cache: Path) -> list[np.ndarray]:
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if list(z["paths"]) == [str(p) for p in paths] and str(z["codec"]) == codec_name:
                return [z[f"mel{i}"] for i in range(len(paths))]
    import streamcodec

    codec = streamcodec.load(codec_name)
    mels = []
    for i, p in enumerate(paths):
        mels.append(decode_mel(codec, load_audio(p)).numpy())
        print(f"decoded {i + 1}/{len(paths)}", end="\r", flush=True)
    np.savez(
        cache,
        paths=np.array([str(p) for p in paths]),
        codec=np.array(codec_name),
        **{f"mel{i}": m for i, m in enumerate(mels)},
    )
    return mels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--codec", default="voice-700")
    p.add_argument("--set", type=Path, default=REPO.parent / "shared/data/dev/speech")
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--vocoder", action="append", required=True, help="weights dir or name")
    p.add_argument("--metrics", default="mel_distance,pesq_wb,stoi,visqol,dnsmos")
    p.add_argument("--cache", type=Path, default=Path("/tmp/ab_voice_vocoder_mels.npz"))
    p.add_argument("--out", type=Path, help="write the table here too")
    args = p.parse_args()
    torch.set_num_threads(1)
    manifest = args.set / "manifest.tsv"
    entries = read_manifest(manifest)[: args.limit]
    mels = decoded_mels(args.codec, [e.path for e in entries], args.cache)
    scorers = Scorers(tuple(args.metrics.split(",")), True, None)
    scores: dict[str, list[dict[str, float]]] = {}
    # scores of unchanged weights are reused (keyed by the weights file's path, size, mtime)
    score_cache = args.cache.with_suffix(".scores.json")
    cached = json.loads(score_cache.read_text()) if score_cache.exists() else {}
    for v in args.vocoder:
        voc = Vocoder.from_pretrained(v)
        w = Path(v) if Path(v).exists() else bundled_weights_dir(v)
        w = w / "model.safetensors"
        key = f"{w.resolve()}|{w.stat().st_size}|{w.stat().st_mtime_ns}|{args.metrics}"
        if key in cached:
            scores[v] = cached[key]
            continue
        rows = []
        for e, mel in zip(entries, mels, strict=True):
            ref = load_audio(e.path)
            with torch.inference_mode():
                y = voc.synthesize(torch.from_numpy(mel)[None])[0].numpy()
            # the streamed output: the offline synthesis after delay_samples of silence
            out = np.concatenate([np.zeros(voc.cfg.delay_samples, np.float32), y])
            deg, _ = align_to(ref, out, voc.cfg.delay_samples, 1600)
            rows.append({**scorers.intrusive(ref, deg), **scorers.non_intrusive(deg)})
        scores[v] = cached[key] = rows
        score_cache.write_text(json.dumps(cached))
        print(f"{v}: " + ", ".join(f"{k} {np.mean([r[k] for r in rows]):.3f}" for k in rows[0]))
    base = args.vocoder[0]
    keys = list(scores[base][0])
    lines = [
        f"{args.codec} decoded mels, first {len(entries)} files of {args.set}; difference to "
        f"{base}: mean ± standard error (paired)",
        "",
        "| vocoder | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for v, rows in scores.items():
        cells = []
        for k in keys:
            vals = np.array([r[k] for r in rows])
            if v == base:
                cells.append(f"{vals.mean():.3f}")
                continue
            d = vals - np.array([r[k] for r in scores[base]])
            se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
            cells.append(f"{vals.mean():.3f} ({d.mean():+.3f} ± {se:.3f})")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
