"""``streamcodec probe``: how much meaning do a tokenizer's tokens carry?

For each labelled set (a folder with ``manifest.tsv``: path, speaker, label) a
linear classifier (multinomial logistic regression, fixed hyper-parameters for
every tokenizer) is trained on utterance-level token statistics and scored with
speaker-disjoint folds (``GroupKFold``, 5 folds; leave-one-speaker-out when a set
has fewer speakers). Two utterance features are scored:

- ``bag``: TF-IDF-weighted, L2-normalised bag of tokens (histogram over the vocabulary);
- ``embed``: mean and standard deviation of the token embeddings (the centroids), standardised.

A set whose labels are not a small class inventory (e.g. transcripts, as in
``dev/speech``) is only measured for codebook usage. Writes ``probe.json`` and
``probe.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from streamcodec.audio import load_audio
from streamcodec.manifest import read_manifest

FEATURES = ("bag", "embed")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "probe",
        help="linear probe of a tokenizer's tokens on labelled sets (speaker-disjoint folds)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--codec",
        required=True,
        help="comma-separated token sources, e.g. semantic-700,mel-kmeans-700,codec2-700c",
    )
    p.add_argument(
        "--set",
        required=True,
        action="append",
        dest="sets",
        help="folder with manifest.tsv (repeatable)",
    )
    p.add_argument("--out", required=True, help="output folder for probe.json / probe.md")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--baseline-dir", default=None, help="folder of baseline codebooks")
    p.add_argument("--weights-dir", default=None, help="semantic tokenizer weights folder")
    p.add_argument("--max-files", type=int, default=None, help="use the first N files only")
    p.set_defaults(func=run)


# ---- classification -------------------------------------------------------------------
def utterance_features(
    token_lists: list[tuple[np.ndarray, np.ndarray]], vocab_size: int
) -> dict[str, np.ndarray]:
    """Per utterance: bag ``[U, V]`` (raw counts) and embed ``[U, 2E]`` (mean, std)."""
    bag = np.zeros((len(token_lists), vocab_size), np.float32)
    emb = []
    for i, (ids, e) in enumerate(token_lists):
        if ids.size == 0:
            raise ValueError(f"utterance {i} produced no tokens")
        np.add.at(bag[i], ids, 1.0)
        emb.append(np.concatenate([e.mean(0), e.std(0)]))
    return {"bag": bag, "embed": np.stack(emb).astype(np.float32)}


def _classifier(kind: str):
    """``bag``/``embed``: logistic regression (the probe); ``ridge``: a closed-form linear
    classifier on standardised features (fast, for model selection)."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "bag":
        return make_pipeline(
            TfidfTransformer(sublinear_tf=True), LogisticRegression(C=10.0, max_iter=2000)
        )
    if kind == "ridge":
        return make_pipeline(StandardScaler(), RidgeClassifier(alpha=10.0))
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


def speaker_folds(speakers: list[str], n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-disjoint (train, test) index pairs: GroupKFold, or leave-one-speaker-out."""
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    groups = np.asarray(speakers)
    n_spk = len(set(speakers))
    if n_spk < 2:
        raise ValueError(f"need at least 2 speakers for speaker-disjoint folds, got {n_spk}")
    splitter = GroupKFold(n_splits=n_folds) if n_spk > n_folds else LeaveOneGroupOut()
    dummy = np.zeros(len(speakers))
    folds = list(splitter.split(dummy, groups=groups))
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
    return folds


def classify(
    feats: np.ndarray, labels: list[str], speakers: list[str], kind: str, n_folds: int
) -> dict:
    """Speaker-disjoint cross-validated accuracy of a linear classifier on ``feats: [U, *]``."""
    y = np.asarray(labels)
    correct, fold_acc = 0, []
    for tr, te in speaker_folds(speakers, n_folds):
        clf = _classifier(kind).fit(feats[tr], y[tr])
        hit = int((clf.predict(feats[te]) == y[te]).sum())
        correct += hit
        fold_acc.append(hit / len(te))
    return {"accuracy": correct / len(y), "fold_accuracy": fold_acc}


def is_classification_set(labels: list[str]) -> bool:
    """True when labels form a small inventory (every class has >= 5 examples on average)."""
    n_cls = len(set(labels))
    return n_cls >= 2 and all(lab for lab in labels) and n_cls * 5 <= len(labels)


# ---- running --------------------------------------------------------------------------
def probe_set(source, set_dir: Path, n_folds: int, max_files: int | None = None) -> dict:
    """Tokenise every file of ``set_dir`` with ``source`` and score it."""
    from streamcodec.semantic.codebook import usage_stats

    entries = read_manifest(set_dir)[:max_files]
    t0 = time.time()
    tokens, audio_s = [], 0.0
    for e in entries:
        pcm = load_audio(e.path, 16000)
        audio_s += pcm.size / 16000
        tokens.append(source.tokens(pcm))
    tok_s = time.time() - t0
    all_ids = torch.from_numpy(np.concatenate([t[0] for t in tokens]))
    result = {
        "set": str(set_dir),
        "files": len(entries),
        "audio_s": round(audio_s, 1),
        "tokenize_s": round(tok_s, 1),
        "usage": usage_stats(all_ids, source.vocab_size),
    }
    labels = [e.label for e in entries]
    if not is_classification_set(labels):
        result["task"] = "usage only (labels are not a class inventory)"
        return result
    speakers = [e.speaker for e in entries]
    counts = Counter(labels)
    result.update(
        {
            "task": "classification",
            "classes": len(counts),
            "speakers": len(set(speakers)),
            "chance_uniform": 1.0 / len(counts),
            "chance_majority": max(counts.values()) / len(labels),
        }
    )
    feats = utterance_features(tokens, source.vocab_size)
    for kind in FEATURES:
        result[kind] = classify(feats[kind], labels, speakers, kind, n_folds)
    return result


def markdown(report: dict) -> str:
    lines = [
        "| codec | set | classes | chance (uniform / majority) | acc bag | acc embed "
        "| usage (ppl / V) |",
        "|---|---|---|---|---|---|---|",
    ]
    for codec, sets in report["results"].items():
        for name, r in sets.items():
            u = r["usage"]
            if r["task"] != "classification":
                lines.append(
                    f"| {codec} | {name} | – | – | – | – | {u['perplexity']:.0f} / "
                    f"{u['vocab_size']} = {u['usage']:.3f} |"
                )
                continue
            lines.append(
                f"| {codec} | {name} | {r['classes']} | {r['chance_uniform']:.3f} / "
                f"{r['chance_majority']:.3f} | {r['bag']['accuracy']:.3f} | "
                f"{r['embed']['accuracy']:.3f} | {u['perplexity']:.0f} / {u['vocab_size']} = "
                f"{u['usage']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from streamcodec.semantic.sources import load_source

    if args.folds < 2:
        raise ValueError(f"--folds must be >= 2, got {args.folds}")
    names = [n.strip() for n in args.codec.split(",") if n.strip()]
    sets = [Path(s) for s in args.sets]
    for s in sets:
        if not (s / "manifest.tsv").exists():
            raise FileNotFoundError(f"no manifest.tsv in {s}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "folds": f"speaker-disjoint, GroupKFold({args.folds}) or leave-one-speaker-out",
        "classifier": "logistic regression; bag: TF-IDF(sublinear) C=10; embed: "
        "standardised mean+std of centroids, C=1",
        "machine": f"{platform.node()} {platform.machine()}, torch {torch.__version__}",
        "results": {},
    }
    for name in names:
        source = load_source(name, args.baseline_dir, args.weights_dir)
        report["results"][name] = {}
        for s in sets:
            r = probe_set(source, s, args.folds, args.max_files)
            report["results"][name][s.name] = r
            if r["task"] == "classification":
                print(
                    f"{name:16s} {s.name:10s} bag {r['bag']['accuracy']:.3f}  embed "
                    f"{r['embed']['accuracy']:.3f}  chance {r['chance_uniform']:.3f}  "
                    f"usage {r['usage']['usage']:.3f}"
                )
            else:
                print(
                    f"{name:16s} {s.name:10s} usage {r['usage']['usage']:.3f} "
                    f"(perplexity {r['usage']['perplexity']:.0f})"
                )
        (out / "probe.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "probe.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {out / 'probe.json'}")
    return 0
