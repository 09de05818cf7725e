"""Triton kernels with torch references (installed as ``streamcodec.kernels``).

Models never call these directly: ``streamcodec.ops`` is the one dispatch point.
"""
