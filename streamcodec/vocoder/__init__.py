"""Streaming neural vocoder: log-mel -> 16 kHz waveform (Vocos-style ConvNeXt + iSTFT head).

Public pieces: :class:`VocoderConfig`, :class:`Vocoder` (inference: load, synthesize,
stream) and :class:`VocoderStream`. The codec wrapper is
:class:`streamcodec.vocoder.codec.MelVocoderCodec` (``streamcodec.load("mel-vocoder")``).
"""

from streamcodec.vocoder.inference import Vocoder, bundled_weights_dir
from streamcodec.vocoder.model import VocoderConfig, VocoderGenerator
from streamcodec.vocoder.streaming import VocoderStream

__all__ = ["Vocoder", "VocoderConfig", "VocoderGenerator", "VocoderStream", "bundled_weights_dir"]
