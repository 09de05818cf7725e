"""Cached few-step flow-matching decoder: token frames -> normalised log-mel -> vocoder.

``FlowDecoder(DecoderConfig)`` (conditioning encoder + transformer over mel patches),
``generate(decoder, ids, q, keep, SamplerConfig)`` offline,
``DecoderStream(decoder, sampler)`` per stream.
"""

from streamcodec.decoder.conditioning import CondEncoder, CondState
from streamcodec.decoder.config import DecoderConfig
from streamcodec.decoder.model import FlowDecoder, KVCache, two_stream_mask
from streamcodec.decoder.sampling import SamplerConfig, generate, generate_uncached
from streamcodec.decoder.stream import DecoderStream

__all__ = [
    "CondEncoder",
    "CondState",
    "DecoderConfig",
    "DecoderStream",
    "FlowDecoder",
    "KVCache",
    "SamplerConfig",
    "generate",
    "generate_uncached",
    "two_stream_mask",
]
