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


def test_codecs_without_bundled_weights_are_listed_but_not_available(tmp_path, monkeypatch):
    from streamcodec import registry
    from streamcodec.linksim.sweep import default_codecs

    assert registry.is_available("codec2-700c") and registry.is_available("mel-vocoder")
    available = registry.list_codecs(available_only=True)
    assert set(available) <= set(registry.list_codecs())
    for name in ("voice-350", "voice-700", "voice-1400"):
        shipped = (registry._PACKAGE_DIR / "weights" / "voice" / name).exists()
        assert registry.is_available(name) == shipped
        assert (name in available) == shipped
    assert set(default_codecs()) <= set(available)  # the link sweep never picks an unloadable one
    registry.register(
        "x-test", "streamcodec.baselines.codec2:Codec2", "t", bundled_weights="nope/x"
    )
    try:
        assert "x-test" in registry.list_codecs() and not registry.is_available("x-test")
    finally:
        del registry._REGISTRY["x-test"]
