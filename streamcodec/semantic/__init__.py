"""Streaming semantic tokenizer: a block-causal MAE-pretrained ViT over 20 ms log-mel patches,
features pooled per token frame and assigned to frozen k-means centroids.

    from streamcodec.semantic import load_tokenizer
    tok = load_tokenizer("semantic-700")        # 25 frames/s, vocabulary 8192
    ids = tok.encode(pcm)                       # pcm: [T] float32, 16 kHz -> [F] int64
    s = tok.stream(); s.push(pcm_chunk).ids; s.flush()

``semantic-350`` / ``-700`` / ``-1400`` are the token frames of voice-350/700/1400
(80 / 40 / 20 ms). One encoder is shared by all rates and all streams.
"""

from streamcodec.semantic.codebook import Codebook, usage_stats
from streamcodec.semantic.config import RATES, RateConfig, SemanticEncoderConfig
from streamcodec.semantic.encoder import SemanticEncoder
from streamcodec.semantic.streaming import EncoderStream, extract_features
from streamcodec.semantic.tokenizer import (
    SemanticTokenizer,
    TokenFrames,
    TokenizerStream,
    available_tokenizers,
    load_encoder,
    load_tokenizer,
)

__all__ = [
    "RATES",
    "Codebook",
    "EncoderStream",
    "RateConfig",
    "SemanticEncoder",
    "SemanticEncoderConfig",
    "SemanticTokenizer",
    "TokenFrames",
    "TokenizerStream",
    "available_tokenizers",
    "extract_features",
    "load_encoder",
    "load_tokenizer",
    "usage_stats",
]
