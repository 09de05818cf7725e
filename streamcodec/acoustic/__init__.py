"""Acoustic tokens: a causal encoder of what the semantic token misses, quantised by FSQ.

``AcousticEncoder(cfg)(feat, centroid, mel, state) -> (q, codes, state)``;
``FSQ(levels)`` maps codes to values and back.
"""

from streamcodec.acoustic.encoder import AcousticEncoder, AcousticEncoderConfig, AcousticState
from streamcodec.acoustic.fsq import FSQ

__all__ = ["FSQ", "AcousticEncoder", "AcousticEncoderConfig", "AcousticState"]
