"""Bundled audio for the demo and tests (see ATTRIBUTION.md)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_CLIP = "1898-145715-0016.flac"


def speech_dir() -> Path:
    """Directory of the bundled speech clips (holds a ``manifest.tsv``)."""
    return Path(str(files(__name__) / "speech"))


def demo_clip() -> Path:
    """The 9.3 s bundled speech clip the demo codes."""
    return speech_dir() / DEMO_CLIP
