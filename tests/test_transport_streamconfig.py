"""Stream descriptions in the hello: stable config ids, strict JSON parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcodec.transport.streamconfig import StreamConfig
from streamcodec.transport.toycodec import ToyCodec


def test_config_id_is_stable_and_distinguishes_codecs():
    a = StreamConfig.from_codec(ToyCodec(28, 40))
    assert a == StreamConfig("toy-28b-40ms", 16000, 640, 28)
    assert 1 <= a.config_id <= 255
    assert a.config_id == StreamConfig("toy-28b-40ms", 16000, 640, 28).config_id
    ids = {StreamConfig(f"c{i}", 16000, 320, 26).config_id for i in range(50)}
    assert len(ids) > 40  # a hash, so the odd collision, but no constant
    assert StreamConfig.from_dict(a.to_dict()) == a
    assert (
        StreamConfig.from_dict(StreamConfig("v", 16000, 320, None).to_dict()).bits_per_frame is None
    )


@pytest.mark.parametrize(
    "bad",
    [{"version": 2, "codec": "x", "sample_rate": 16000, "frame_samples": 320, "bits_per_frame": 8},
     {"version": 1, "codec": "", "sample_rate": 16000, "frame_samples": 320, "bits_per_frame": 8},
     {"version": 1, "codec": "x", "sample_rate": -1, "frame_samples": 320, "bits_per_frame": 8},
     {"version": 1, "codec": "x", "sample_rate": 16000, "frame_samples": 320, "bits_per_frame": 0},
     {"version": 1, "codec": "x", "sample_rate": 16000, "frame_samples": True, "bits_per_frame": 8},
     {"version": 1, "codec": "x", "sample_rate": 16000, "frame_samples": 320},
     [1, 2]],
)  # fmt: skip
def test_from_dict_rejects_malformed(bad):
    with pytest.raises(ValueError):
        StreamConfig.from_dict(bad)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["version", "codec", "sample_rate", "frame_samples", "bits_per_frame", "x"]
        ),
        st.none() | st.integers() | st.text(max_size=3) | st.booleans(),
    )
)
def test_from_dict_fuzz_only_value_errors(d):  # fmt: skip
    try:
        StreamConfig.from_dict(d)
    except ValueError:
        pass
