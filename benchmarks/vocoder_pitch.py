"""Does the vocoder keep a steady pitch? Copy synthesis of steady harmonic tones.

A generator that predicts each frame's phase relative to the frame's first sample gives,
from the same input, the same phase every frame: its output repeats every hop (10 ms), and
a harmonic that is not a multiple of 100 Hz is pulled onto that grid. This measures it on
synthetic vowels (5 harmonics at 1/k amplitude, 2 s, the middle 1 s scored) at ``--f0``
fundamentals: the share of output energy within +-5 Hz of the input's harmonics (1.0: in
tune) and the strongest output frequency near the fundamental.

    python benchmarks/vocoder_pitch.py --vocoder mel-vocoder [--vocoder DIR ...] --out DIR

writes ``DIR/pitch.json`` and ``DIR/pitch.md`` (one row per f0, one column per vocoder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from streamcodec.vocoder import Vocoder

SR = 16000


def harmonic_tone(f0: float, seconds: float = 2.0, harmonics: int = 5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, harmonics + 1))


def pitch_scores(vocoder: Vocoder, f0: float, harmonics: int = 5) -> dict[str, float]:
    x = harmonic_tone(f0, harmonics=harmonics).astype(np.float32)
    y = vocoder.copy_synthesis(torch.from_numpy(x))[0].double().numpy()[SR // 2 : -SR // 2]
    power = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    near = np.zeros_like(power, dtype=bool)
    for k in range(1, harmonics + 1):
        near |= np.abs(freqs - f0 * k) < 5.0
    low = (freqs > f0 / 2) & (freqs < 1.5 * f0)
    return {
        "harmonic_share": float(power[near].sum() / power.sum()),
        "peak_near_f0_hz": float(freqs[low][np.argmax(power[low])]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocoder", action="append", help="bundled name or weights dir (repeatable)")
    p.add_argument(
        "--f0", type=float, nargs="+", default=[100.0, 130.0, 162.5, 200.0, 230.0, 237.5, 275.0]
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    names = args.vocoder or ["mel-vocoder"]
    if any(not f > 0 for f in args.f0):
        raise SystemExit(f"--f0 values must be > 0, got {args.f0}")
    results = {}
    for name in names:
        v = Vocoder.from_pretrained(name)
        results[name] = {
            "integrate_phase": v.cfg.integrate_phase,
            "f0": {f"{f:g}": pitch_scores(v, f) for f in args.f0},
        }
        shares = [r["harmonic_share"] for r in results[name]["f0"].values()]
        results[name]["mean_harmonic_share"] = float(np.mean(shares))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pitch.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [
        "| f0 (Hz) | " + " | ".join(f"{n}: share, peak (Hz)" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for f in args.f0:
        cells = []
        for n in names:
            r = results[n]["f0"][f"{f:g}"]
            cells.append(f"{r['harmonic_share']:.3f}, {r['peak_near_f0_hz']:.1f}")
        lines.append(f"| {f:g} | " + " | ".join(cells) + " |")
    lines.append(
        "| mean share | "
        + " | ".join(f"{results[n]['mean_harmonic_share']:.3f}" for n in names)
        + " |"
    )
    (args.out / "pitch.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
