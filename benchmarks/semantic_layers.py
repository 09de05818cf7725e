"""Which encoder blocks make the best semantic features? A continuous linear probe per choice.

For the training split's Speech Commands clips (``train/speech/speechcommands``:
labelled words, 167 speakers, none of them in ``probe/``) every candidate set of
blocks gives a feature per 20 ms token (mean of the parameter-free LayerNorm'd
block outputs, as the tokenizer computes it); an utterance is the mean and
standard deviation of its token features; a ridge classifier (closed-form linear probe, fast
enough for a 2-core machine) is scored with speaker-disjoint 5-fold cross-validation. The
probe sets themselves are not used, so the choice does not leak into the reported probe accuracies.

    python benchmarks/semantic_layers.py --encoder-dir DIR [--out benchmarks/results]

Writes ``semantic_layers.json`` (accuracy per candidate, best choice).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamcodec.audio import load_audio
from streamcodec.cli.probe import classify
from streamcodec.manifest import read_manifest
from streamcodec.semantic.tokenizer import load_encoder

OUT = Path(__file__).resolve().parent / "results"


def candidates(n_layers: int) -> list[tuple[int, ...]]:
    c = [(i,) for i in range(n_layers)]
    c += [tuple(range(k, n_layers)) for k in range(n_layers - 1)]  # tails
    c += [tuple(range(k, k + 3)) for k in range(n_layers - 3)]  # windows of 3 (not tails)
    return sorted(set(c), key=lambda t: (len(t), t))


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoder-dir", required=True)
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    enc = load_encoder(args.encoder_dir)
    cfg = enc.cfg
    entries = [
        e
        for e in read_manifest(Path(args.data) / "train" / "speech")
        if e.rel_path.startswith("train/speech/speechcommands/")
    ]
    if args.max_files and args.max_files < len(entries):  # an even spread over words/speakers
        step = len(entries) / args.max_files
        entries = [entries[int(i * step)] for i in range(args.max_files)]
    cands = candidates(cfg.n_layers)
    feats = {c: [] for c in cands}
    t0 = time.time()
    for e in entries:
        pcm = torch.from_numpy(load_audio(e.path))
        pcm = F.pad(pcm, (0, -pcm.numel() % cfg.chunk_samples))[None]
        layers = enc.forward_dense(enc.wave_to_patches(pcm))
        normed = torch.stack([F.layer_norm(h[0], (cfg.d_model,)) for h in layers])  # [L, N, D]
        for c in cands:
            f = normed[list(c)].mean(0)
            feats[c].append(torch.cat([f.mean(0), f.std(0)]).numpy())
    extract_s = time.time() - t0
    labels = [e.label for e in entries]
    speakers = [e.speaker for e in entries]
    results = []
    for c in cands:
        r = classify(np.stack(feats[c]), labels, speakers, "ridge", 5)
        results.append({"layers": list(c), "accuracy": r["accuracy"]})
        print(c, f"{r['accuracy']:.3f}", flush=True)
    best = max(results, key=lambda r: r["accuracy"])
    report = {
        "encoder_dir": str(args.encoder_dir),
        "set": "train/speech/speechcommands (speaker-disjoint 5-fold CV)",
        "files": len(entries),
        "classes": len(set(labels)),
        "extract_s": round(extract_s, 1),
        "feature": "utterance mean+std of mean LayerNorm'd block outputs; ridge classifier",
        "results": results,
        "best": best,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "semantic_layers.json").write_text(json.dumps(report, indent=2) + "\n")
    print("best", best)


if __name__ == "__main__":
    main()
