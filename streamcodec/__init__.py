"""streamcodec: a sub-kbps streaming voice and audio codec SDK.

Public API (pinned by tests/test_api.py)::

    import streamcodec
    codec = streamcodec.load("codec2-700c")
    frames = codec.encode(pcm)            # pcm: [T] float32, 16 kHz mono
    pcm_out = codec.decode(frames)
    enc, dec = codec.encoder(), codec.decoder()   # one session per stream
"""

from streamcodec.audio import load_audio, resample, save_audio
from streamcodec.codec import Codec, DecoderSession, EncoderSession, Frame
from streamcodec.registry import list_codecs, load, register

__version__ = "0.1.0"

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
