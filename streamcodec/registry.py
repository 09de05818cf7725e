"""Codec registry: ``streamcodec.load(name)`` and ``streamcodec.list_codecs()``.

Entries are registered as ``"module:factory"`` strings and imported on first
use, so listing codecs never imports heavy optional dependencies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamcodec.codec import Codec

_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CodecEntry:
    name: str
    target: str  # "package.module:factory"
    description: str
    kwargs: tuple[tuple[str, object], ...] = ()
    #: path, relative to the streamcodec package, that must exist for ``load(name)`` to
    #: work without arguments (a model's bundled weights); None: always loadable
    bundled_weights: str | None = None

    def factory(self) -> Callable[..., Codec]:
        module_name, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attr)


_REGISTRY: dict[str, CodecEntry] = {}

#: what ``streamcodec demo`` and the transport use when no codec is named
#: (becomes the neural ``voice-700`` once it ships)
DEFAULT_CODEC = "codec2-700c"


def register(
    name: str,
    target: str,
    description: str,
    *,
    bundled_weights: str | None = None,
    **kwargs: object,
) -> None:
    """Register a codec factory under ``name`` (``target`` is ``"module:callable"``).

    ``bundled_weights``: a path relative to the streamcodec package that holds the
    codec's bundled model; while it is missing the codec is listed but not available.
    Other keyword arguments are passed to the factory by :func:`load`.
    """
    if name in _REGISTRY and _REGISTRY[name].target != target:
        raise ValueError(f"codec name {name!r} is already registered to {_REGISTRY[name].target}")
    kw = tuple(sorted(kwargs.items()))
    _REGISTRY[name] = CodecEntry(name, target, description, kw, bundled_weights)


def list_codecs(available_only: bool = False) -> list[str]:
    """Names accepted by :func:`load`, sorted; ``available_only``: only those whose
    bundled weights are present (the others need ``load(name, weights=DIR)``)."""
    return sorted(n for n in _REGISTRY if not available_only or is_available(n))


def is_available(name: str) -> bool:
    """True when ``load(name)`` needs no arguments (its bundled weights, if any, exist)."""
    entry = _entry(name)
    return entry.bundled_weights is None or (_PACKAGE_DIR / entry.bundled_weights).exists()


def describe(name: str) -> str:
    return _entry(name).description


def _entry(name: str) -> CodecEntry:
    if not isinstance(name, str):
        raise TypeError(f"codec name must be a str, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; available: {', '.join(list_codecs())}") from None


def load(name: str, **overrides: object) -> Codec:
    """Load a codec by name, e.g. ``streamcodec.load("codec2-700c")``."""
    entry = _entry(name)
    kwargs = dict(entry.kwargs)
    kwargs.update(overrides)
    return entry.factory()(**kwargs)


# --- built-in codecs --------------------------------------------------------------------------
for _mode in ("700C", "1200", "1600", "3200"):
    register(
        f"codec2-{_mode.lower()}",
        "streamcodec.baselines.codec2:Codec2",
        f"Codec 2 {_mode} (narrow-band, 8 kHz inside; libcodec2)",
        mode=_mode,
    )
register(
    "opus-6k",
    "streamcodec.baselines.opus:OpusCodec",
    "Opus 6 kbit/s VBR, voip application, 20 ms frames (PyAV libopus)",
    bitrate=6000,
)
register(
    "amrnb-4.75",
    "streamcodec.baselines.amrnb:AmrNbCodec",
    "AMR-NB 4.75 kbit/s (narrow-band; PyAV libopencore_amrnb)",
    mode="MR475",
)
register(
    "mel-vocoder",
    "streamcodec.vocoder.codec:MelVocoderCodec",
    "log-mel (fp16, 128 kbit/s) + streaming neural vocoder: analysis-synthesis upper bound",
    bundled_weights="weights/mel-vocoder/model.safetensors",
)
register(
    "mel-vocoder-pghi",
    "streamcodec.vocoder.codec:MelVocoderCodec",
    "mel-vocoder with its output re-phased from its magnitude (PGHI; +30 ms delay)",
    phase="pghi",
    bundled_weights="weights/mel-vocoder/model.safetensors",
)
for _rate in ("350", "700", "1400"):
    register(
        f"voice-{_rate}",
        "streamcodec.voice.codec:VoiceCodec",
        f"semantic + acoustic tokens (26 bit/frame), cached few-step flow decoder ({_rate} class)",
        config=f"voice-{_rate}",
        bundled_weights=f"weights/voice/voice-{_rate}/model.safetensors",
    )
