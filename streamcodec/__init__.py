"""streamcodec: a sub-kbps streaming voice and audio codec SDK.

Public API (pinned by tests/test_api.py)::

    import streamcodec
    codec = streamcodec.load("codec2-700c")
    frames = codec.encode(pcm)            # pcm: [T] float32, 16 kHz mono
    pcm_out = codec.decode(frames)
    enc, dec = codec.encoder(), codec.decoder()   # one session per stream

The public names are imported lazily (PEP 562), so ``import streamcodec.ops``
on a GPU box without PyAV/soxr does not pull in the audio stack.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_audio": "streamcodec.audio",
    "resample": "streamcodec.audio",
    "save_audio": "streamcodec.audio",
    "Codec": "streamcodec.codec",
    "DecoderSession": "streamcodec.codec",
    "EncoderSession": "streamcodec.codec",
    "Frame": "streamcodec.codec",
    "list_codecs": "streamcodec.registry",
    "load": "streamcodec.registry",
    "register": "streamcodec.registry",
}

__all__ = [
    "Codec",
    "DecoderSession",
    "EncoderSession",
    "Frame",
    "list_codecs",
    "load",
    "load_audio",
    "register",
    "resample",
    "save_audio",
    "__version__",
]

if TYPE_CHECKING:
    from streamcodec.audio import load_audio, resample, save_audio
    from streamcodec.codec import Codec, DecoderSession, EncoderSession, Frame
    from streamcodec.registry import list_codecs, load, register


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamcodec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _SourceKernelsFinder(importlib.abc.MetaPathFinder):
    """Resolve ``streamcodec.kernels`` to the top-level ``kernels/`` folder of a source
    checkout (installed wheels map it there through ``package-dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> Any:
        if fullname != "streamcodec.kernels":
            return None
        return importlib.util.spec_from_file_location(
            fullname, self.root / "__init__.py", submodule_search_locations=[str(self.root)]
        )


def _install_source_kernels_finder() -> None:
    here = Path(__file__).resolve().parent
    src = here.parent / "kernels"
    if (here / "kernels").is_dir() or not (src / "__init__.py").is_file():
        return  # installed layout, or no checkout around
    if not any(isinstance(f, _SourceKernelsFinder) for f in sys.meta_path):
        sys.meta_path.append(_SourceKernelsFinder(src))


_install_source_kernels_finder()
