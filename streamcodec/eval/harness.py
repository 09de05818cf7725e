"""The evaluation harness: run codecs over a manifest, score every file, write a report.

Outputs in ``out_dir``:

- ``summary.json``: ``{"meta": {...}, "codecs": {name: {payload_bps, mel_distance, …, files}}}``
  with the clean reference as the codec named ``reference`` (intrusive metrics of
  the reference against itself: the ceiling of each metric);
- ``per_file.csv`` and ``transcripts.jsonl`` (when WER is on);
- ``report.md`` with the summary table, spectrogram PNGs and a few decoded clips.

WER is the corpus WER in percent (word errors / reference words over all files),
against the manifest transcript, or against Whisper's transcription of the clean
reference where a file has none. Real-time factors are processing seconds per
audio second on this machine (offline encode / decode, one stream).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import multiprocessing
import os
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamcodec.audio import load_audio, save_audio
from streamcodec.codec import Codec
from streamcodec.eval import ALL_METRICS, SPEECH_ONLY
from streamcodec.eval.align import align_to
from streamcodec.eval.metrics import Scorers
from streamcodec.manifest import ManifestEntry, read_manifest
from streamcodec.registry import load

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
REFERENCE = "reference"
SUMMARY_KEYS = (
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
)


@dataclass(frozen=True)
class EvalConfig:
    codecs: tuple[str, ...]
    set_dir: Path
    out_dir: Path
    limit: int | None = None
    metrics: tuple[str, ...] = ALL_METRICS
    mode: str = "auto"  # "speech", "audio" or "auto" (speech when the manifest names speakers)
    whisper_model: str | None = None
    clips: int = 2  # files whose decoded audio and spectrograms go into the report
    clip_max_s: float = 8.0
    max_shift_ms: float = 100.0
    progress: bool = True


def machine_info() -> dict[str, object]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def _is_speech(entries: Sequence[ManifestEntry], mode: str) -> bool:
    if mode not in ("auto", "speech", "audio"):
        raise ValueError(f"mode must be 'auto', 'speech' or 'audio', got {mode!r}")
    if mode == "auto":
        return any(e.speaker for e in entries)
    return mode == "speech"


class _Accumulator:
    """Per-codec running sums for the summary."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}
        self.bits = 0.0
        self.audio_s = 0.0
        self.enc_s = 0.0
        self.dec_s = 0.0
        self.word_errors = 0
        self.ref_words = 0
        self.files = 0

    def add_row(self, row: dict) -> None:
        """Fold one file's row (as made by :class:`_FileEvaluator`) into the sums."""
        for key in SUMMARY_KEYS:
            v = row.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.values.setdefault(key, []).append(float(v))
        self.bits += row.get("payload_bits", 0)
        self.enc_s += row.get("enc_s", 0.0)
        self.dec_s += row.get("dec_s", 0.0)
        self.word_errors += row.get("word_errors", 0)
        self.ref_words += row.get("ref_words", 0)
        self.audio_s += row["duration_s"]
        self.files += 1

    def summary(self, is_reference: bool) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {}
        for key in SUMMARY_KEYS:
            vals = [v for v in self.values.get(key, []) if not math.isnan(v)]
            out[key] = float(np.mean(vals)) if vals else None
        out["payload_bps"] = None if is_reference else self.bits / self.audio_s
        out["enc_rtf"] = None if is_reference else self.enc_s / self.audio_s
        out["dec_rtf"] = None if is_reference else self.dec_s / self.audio_s
        out["wer"] = 100.0 * self.word_errors / self.ref_words if self.ref_words else None
        out["files"] = self.files
        return out


class _FileEvaluator:
    """Codes one file through every codec and scores it (one per process)."""

    def __init__(self, cfg: EvalConfig, speech: bool, metrics: tuple[str, ...]) -> None:
        self.cfg = cfg
        self.speech = speech
        self.codecs: list[Codec] = [load(name) for name in cfg.codecs]
        self.scorers = Scorers(metrics, speech, cfg.whisper_model)

    def __call__(self, index: int, entry: ManifestEntry) -> tuple[list[dict], list[dict], dict]:
        """Returns per-codec rows, transcripts, and decoded audio (for the first files only)."""
        scorers = self.scorers
        ref = load_audio(entry.path, SAMPLE_RATE)
        duration_s = ref.size / SAMPLE_RATE
        ref_text = entry.label if self.speech else ""
        decoded: dict[str, np.ndarray] = {REFERENCE: ref}
        rows: list[dict] = []
        transcripts: list[dict] = []
        if scorers.transcriber is not None:
            ref_hyp = scorers.transcriber.transcribe(ref)
            truth = ref_text or ref_hyp  # no transcript: score against the reference's own
        max_shift = int(self.cfg.max_shift_ms * SAMPLE_RATE / 1000)
        for name, codec in [(REFERENCE, None), *[(c.name, c) for c in self.codecs]]:
            row: dict = {"codec": name, "file": entry.rel_path, "duration_s": duration_s}
            if codec is None:
                deg = ref
            else:
                t0 = time.perf_counter()
                frames = codec.encode(ref)
                t1 = time.perf_counter()
                out = codec.decode(frames)
                t2 = time.perf_counter()
                deg, lag = align_to(ref, out, codec.delay_samples, max_shift)
                bits = codec.payload_bits(frames)
                row.update(
                    payload_bps=bits / duration_s,
                    enc_rtf=(t1 - t0) / duration_s,
                    dec_rtf=(t2 - t1) / duration_s,
                    lag_samples=lag,
                    payload_bits=bits,
                    enc_s=t1 - t0,
                    dec_s=t2 - t1,
                )
            decoded[name] = deg
            row.update(scorers.intrusive(ref, deg))
            row.update(scorers.non_intrusive(deg))
            if scorers.transcriber is not None and not (name == REFERENCE and not ref_text):
                hyp = ref_hyp if name == REFERENCE else scorers.transcriber.transcribe(deg)
                errors, n_words = scorers.transcriber.errors(truth, hyp)
                row.update(
                    wer=100.0 * errors / n_words if n_words else math.nan,
                    word_errors=errors,
                    ref_words=n_words,
                )
                transcripts.append(
                    {"codec": name, "file": entry.rel_path, "hyp": hyp, "ref": truth}
                )
            rows.append(row)
        return rows, transcripts, (decoded if index < self.cfg.clips else {})


_WORKER: _FileEvaluator | None = None


def _init_worker(cfg: EvalConfig, speech: bool, metrics: tuple[str, ...]) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(1)  # one process per core; no thread oversubscription
    _WORKER = _FileEvaluator(cfg, speech, metrics)


def _run_worker(job: tuple[int, ManifestEntry]) -> tuple[list[dict], list[dict], dict]:
    assert _WORKER is not None
    return _WORKER(*job)


def run_eval(cfg: EvalConfig, jobs: int = 1) -> dict:
    """Evaluate ``cfg.codecs`` on ``cfg.set_dir``; writes the report and returns the summary.

    ``jobs > 1`` scores files in that many worker processes (real-time factors
    are then measured under that load).
    """
    entries = read_manifest(cfg.set_dir)
    if cfg.limit is not None:
        if cfg.limit <= 0:
            raise ValueError(f"limit must be positive, got {cfg.limit}")
        entries = entries[: cfg.limit]
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    speech = _is_speech(entries, cfg.mode)
    metrics = tuple(m for m in cfg.metrics if speech or m not in SPEECH_ONLY)
    local = _FileEvaluator(cfg, speech, metrics)  # also validates codec names and metrics
    names = [REFERENCE] + [c.name for c in local.codecs]
    out_dir = Path(cfg.out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    (out_dir / "spectrograms").mkdir(parents=True, exist_ok=True)

    acc = {n: _Accumulator() for n in names}
    rows: list[dict] = []
    transcripts: list[dict] = []
    bar = tqdm(total=len(entries), desc="eval", unit="file", disable=not cfg.progress)
    if jobs == 1:
        results = (local(i, e) for i, e in enumerate(entries))
        pool = None
    else:
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=_init_worker, initargs=(cfg, speech, metrics)
        )
        results = pool.map(_run_worker, list(enumerate(entries)))
    try:
        for index, (file_rows, file_transcripts, decoded) in enumerate(results):
            for row in file_rows:
                acc[row["codec"]].add_row(row)
            rows += file_rows
            transcripts += file_transcripts
            if decoded:
                _write_examples(out_dir, index, entries[index], decoded, cfg.clip_max_s)
            bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()

    summary = {
        "meta": {
            "set": str(cfg.set_dir),
            "files": len(entries),
            "mode": "speech" if speech else "audio",
            "metrics": list(metrics),
            "whisper_model": local.scorers.transcriber.model_path
            if local.scorers.transcriber
            else None,
            "jobs": jobs,
            "machine": machine_info(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "codecs": {n: acc[n].summary(n == REFERENCE) for n in names},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_rows(out_dir / "per_file.csv", rows)
    if transcripts:
        with open(out_dir / "transcripts.jsonl", "w", encoding="utf-8") as f:
            for t in transcripts:
                f.write(json.dumps(t) + "\n")
    (out_dir / "report.md").write_text(render_report(summary, out_dir))
    return summary


def _write_rows(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _write_examples(
    out_dir: Path, index: int, entry: ManifestEntry, decoded: dict[str, np.ndarray], max_s: float
) -> None:
    stem = f"{index:02d}_{Path(entry.rel_path).stem}"
    n = int(max_s * SAMPLE_RATE)
    for name, pcm in decoded.items():
        save_audio(out_dir / "clips" / f"{stem}__{name}.flac", pcm[:n])
    try:
        from streamcodec.eval.plots import spectrogram_grid
    except ImportError:  # matplotlib missing: report without pictures
        log.warning("matplotlib not installed; skipping spectrograms")
        return
    spectrogram_grid(
        {k: v[:n] for k, v in decoded.items()}, out_dir / "spectrograms" / f"{stem}.png"
    )


_COLUMNS = (
    ("payload_bps", "bit/s", "{:.0f}"),
    ("mel_distance", "mel dist ↓", "{:.3f}"),
    ("stft_distance", "STFT dist ↓", "{:.3f}"),
    ("pesq_wb", "PESQ-WB", "{:.2f}"),
    ("stoi", "STOI", "{:.3f}"),
    ("visqol", "ViSQOL", "{:.2f}"),
    ("dnsmos_sig", "DNSMOS SIG", "{:.2f}"),
    ("dnsmos_bak", "DNSMOS BAK", "{:.2f}"),
    ("dnsmos_ovrl", "DNSMOS OVRL", "{:.2f}"),
    ("wer", "WER % ↓", "{:.1f}"),
    ("spk_sim", "spk sim", "{:.3f}"),
    ("enc_rtf", "enc RTF", "{:.4f}"),
    ("dec_rtf", "dec RTF", "{:.4f}"),
)


def summary_table(summary: dict) -> str:
    """The summary as a Markdown table (columns without any value are dropped)."""
    codecs = summary["codecs"]
    cols = [c for c in _COLUMNS if any(v.get(c[0]) is not None for v in codecs.values())]
    lines = [
        "| codec | " + " | ".join(c[1] for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, vals in codecs.items():
        cells = ["—" if vals.get(key) is None else fmt.format(vals[key]) for key, _, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_report(summary: dict, out_dir: Path) -> str:
    meta = summary["meta"]
    m = meta["machine"]
    parts = [
        "# streamcodec evaluation",
        "",
        f"- set: `{meta['set']}` ({meta['files']} files, {meta['mode']} mode)",
        f"- machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}",
        f"- date: {meta['date']}",
        f"- metrics: {', '.join(meta['metrics'])}"
        + (
            f"; Whisper model `{Path(meta['whisper_model']).name}`" if meta["whisper_model"] else ""
        ),
        "",
        summary_table(summary),
        "",
        "Means over files; WER is the corpus WER (%), against the transcripts. Payload bit/s "
        "counts the codec's frames packed at bit granularity. RTF = CPU seconds per audio "
        "second, offline, one stream. `reference` scores the clean input against itself.",
        "",
    ]
    pngs = sorted((out_dir / "spectrograms").glob("*.png"))
    if pngs:
        parts += ["## Spectrograms and clips", ""]
        for png in pngs:
            parts.append(f"### {png.stem}\n\n![{png.stem}](spectrograms/{png.name})\n")
            clips = sorted((out_dir / "clips").glob(f"{png.stem}__*.flac"))
            parts.append(
                " · ".join(f"[{c.stem.split('__')[-1]}](clips/{c.name})" for c in clips) + "\n"
            )
    return "\n".join(parts)
