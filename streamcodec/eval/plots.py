"""Spectrogram pictures for the reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamcodec.features import LogMel  # noqa: E402

_MEL = LogMel()


def log_mel_image(pcm: np.ndarray) -> np.ndarray:
    """``[T]`` -> ``[M, F]`` log-mel image for display."""
    with torch.no_grad():
        return _MEL(torch.as_tensor(pcm, dtype=torch.float32)[None])[0].numpy()


def spectrogram_grid(signals: dict[str, np.ndarray], path: Path, sample_rate: int = 16000) -> Path:
    """One row per signal (same colour scale), written to ``path`` as PNG."""
    n = len(signals)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.6 * n + 0.4), sharex=True, squeeze=False)
    images = {k: log_mel_image(v) for k, v in signals.items()}
    vmax = max(float(im.max()) for im in images.values())
    for ax, (name, im) in zip(axes[:, 0], images.items(), strict=True):
        dur = im.shape[1] * _MEL.cfg.hop_length / sample_rate
        ax.imshow(
            im,
            origin="lower",
            aspect="auto",
            vmin=vmax - 12,
            vmax=vmax,
            extent=(0, dur, 0, im.shape[0]),
            cmap="magma",
        )
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return shrink_png(path)


def shrink_png(path: Path, colours: int = 64) -> Path:
    """Rewrite a PNG with a ``colours``-entry palette (a spectrogram picture drops from
    ~1 MB to ~0.2 MB; a colour map needs few entries)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path
