"""Classic codecs behind the same interface, as evaluation baselines and transport fall-backs:
Codec 2 (pycodec2), Opus (PyAV libopus) and AMR-NB (PyAV libopencore_amrnb)."""
