"""The product codecs ``voice-350`` / ``voice-700`` / ``voice-1400``.

``streamcodec.load("voice-700")`` returns a :class:`VoiceCodec`; configurations in
:mod:`streamcodec.voice.config`, weights files in :mod:`streamcodec.voice.model`,
the ``.sc`` file format in :mod:`streamcodec.voice.scfile`.
"""

from streamcodec.voice.config import PRESETS, VoiceConfig, preset

__all__ = ["PRESETS", "VoiceConfig", "preset"]
