"""The public API is small and pinned: changing it must be a deliberate edit of this test."""

from __future__ import annotations

import inspect

import numpy as np

import streamcodec


def test_public_names():
    assert sorted(streamcodec.__all__) == sorted(
        [
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
    )
    for name in streamcodec.__all__:
        assert getattr(streamcodec, name) is not None


def test_codec_interface_members():
    members = {
        "name",
        "sample_rate",
        "frame_samples",
        "bits_per_frame",
        "delay_samples",
        "frame_duration_s",
        "frames_per_s",
        "payload_bps",
        "frame_bytes",
        "encoder",
        "decoder",
        "encode",
        "decode",
        "payload_bits",
        "check_frame",
    }
    assert members <= set(dir(streamcodec.Codec)) | set(streamcodec.Codec.__annotations__)
    assert list(inspect.signature(streamcodec.EncoderSession.push).parameters) == ["self", "pcm"]
    assert list(inspect.signature(streamcodec.DecoderSession.push).parameters) == ["self", "frame"]


def test_ten_line_embedding():
    codec = streamcodec.load("codec2-700c")
    enc, dec = codec.encoder(), codec.decoder()
    pcm = np.zeros(16000, dtype=np.float32)
    out = [dec.push(frame) for frame in enc.push(pcm)]
    assert sum(o.size for o in out) == 16000
    assert isinstance(codec.encode(pcm)[0], bytes)
