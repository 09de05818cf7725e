"""Wire-cost model against the rows measured in design/notes/TRANSPORT.md §2."""

from __future__ import annotations

import pytest

from streamcodec.transport.overhead import OverheadModel


@pytest.mark.parametrize(
    ("payload_bytes", "rate_hz", "fwd_measured", "rev_measured"),
    [(40, 12.5, 13631, 9631), (3, 50, 39038, 37420), (12, 12.5, 10832, 9632),
     (30, 5, 5332, 4052), (150, 1, 2292, 1076)],
)  # fmt: skip
def test_overhead_model_matches_measured_rows(payload_bytes, rate_hz, fwd_measured, rev_measured):
    model = OverheadModel()
    assert model.forward_bps(rate_hz, payload_bytes) == pytest.approx(fwd_measured, rel=0.003)
    # the 3 B @ 50 Hz row's reverse includes the receiver's own delayed consent; 5 % there
    assert model.reverse_bps(rate_hz) == pytest.approx(rev_measured, rel=0.05)


def test_overhead_padding_and_ipv6():
    m = OverheadModel()
    assert [m.padded(n) for n in (0, 1, 4, 5, 12, 13)] == [0, 4, 4, 8, 12, 16]
    assert m.message_wire_bytes(11) == 93 + 12
    assert OverheadModel.ipv6().message_wire_bytes(11) == 113 + 12
    assert m.forward_bps(0, 0) == m.consent_bps
