"""The impaired-link model: rate and queue, loss models, outages, jitter, seeds."""

from __future__ import annotations

import math

import pytest

from streamcodec.linksim.link import GilbertElliott, LinkConfig, LinkModel, Outage


def test_serialisation_delay_and_drop_tail_queue():
    cfg = LinkConfig(rate_bps=8000, queue_bytes=300, delay_ms=50)
    m = LinkModel(cfg)
    # 72 B payload + 28 B IP/UDP = 100 B = 100 ms at 8 kbit/s
    t1 = m.submit(0.0, 72)
    t2 = m.submit(0.0, 72)
    t3 = m.submit(0.0, 72)
    assert t1 == [pytest.approx(0.15)] and t2 == [pytest.approx(0.25)]
    assert t3 == [pytest.approx(0.35)]
    assert m.queued_bytes(0.0) == 300
    assert m.submit(0.0, 72) == [] and m.stats.dropped_queue == 1  # 400 B > 300 B
    assert m.queued_bytes(0.1) == 200  # the first one has left the transmitter
    assert m.submit(0.1, 72) == [pytest.approx(0.45)]
    assert m.stats.max_queue_bytes == 300 and m.stats.offered == 5 and m.stats.delivered == 4
    assert [r.outcome for r in m.records] == ["delivered"] * 3 + ["queue", "delivered"]


def test_default_queue_limit_holds_the_dtls_certificate_flight():
    assert LinkConfig(rate_bps=2000).queue_limit_bytes >= 810 + 28
    assert LinkConfig(rate_bps=64000).queue_limit_bytes == 4000
    assert LinkConfig().queue_limit_bytes is None


def test_bernoulli_loss_rate_and_seed_determinism():
    cfg = LinkConfig(loss=0.2)
    a, b, c = (LinkModel(cfg, seed=s, keep_records=False) for s in (3, 3, 4))
    out_a = [bool(a.submit(i * 0.01, 100)) for i in range(20000)]
    out_b = [bool(b.submit(i * 0.01, 100)) for i in range(20000)]
    out_c = [bool(c.submit(i * 0.01, 100)) for i in range(20000)]
    assert out_a == out_b and out_a != out_c
    assert 1 - sum(out_a) / len(out_a) == pytest.approx(0.2, abs=0.01)
    assert a.stats.dropped_loss == out_a.count(False)


def test_gilbert_elliott_mean_loss_and_burst_length():
    ge = GilbertElliott.from_loss(0.1, mean_burst_packets=4.0)
    assert ge.mean_loss == pytest.approx(0.1) and ge.mean_burst_packets == pytest.approx(4.0)
    m = LinkModel(LinkConfig(burst=ge), seed=1, keep_records=False)
    lost = [not m.submit(i * 0.01, 50) for i in range(60000)]
    assert sum(lost) / len(lost) == pytest.approx(0.1, abs=0.01)
    bursts, run = [], 0
    for x in lost:
        if x:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert sum(bursts) / len(bursts) == pytest.approx(4.0, rel=0.1)
    # the same mean loss as independent drops would give bursts of ~1.1
    m2 = LinkModel(LinkConfig(loss=0.1), seed=1)
    lost2 = [not m2.submit(i * 0.01, 50) for i in range(20000)]
    runs2 = "".join("x" if x else "." for x in lost2).split(".")
    mean2 = sum(len(r) for r in runs2 if r) / sum(1 for r in runs2 if r)
    assert mean2 < 1.3


def test_outages_are_relative_to_the_epoch_and_protected_datagrams_pass():
    cfg = LinkConfig(delay_ms=10, outages=(Outage(1.0, 0.5),), loss=1.0)
    m = LinkModel(cfg, epoch_s=100.0)
    assert m.submit(100.9, 10, protected=True) == [pytest.approx(100.91)]
    assert m.submit(101.2, 10, protected=True) != []  # protected: outage and loss spared
    m2 = LinkModel(LinkConfig(outages=(Outage(1.0, 0.5),)), epoch_s=100.0)
    assert m2.submit(100.9, 10) and not m2.submit(101.0, 10) and not m2.submit(101.49, 10)
    assert m2.submit(101.5, 10) and m2.stats.dropped_outage == 2


def test_jitter_keeps_order_reordering_and_duplication():
    m = LinkModel(LinkConfig(delay_ms=100, jitter_ms=40), seed=5)
    times = [m.submit(i * 0.005, 20)[0] for i in range(500)]
    assert times == sorted(times)
    assert max(t - i * 0.005 for i, t in enumerate(times)) <= 0.14 + 1e-9
    m = LinkModel(LinkConfig(delay_ms=10, reorder=0.2, reorder_ms=30, duplicate=0.1), seed=6)
    out = [m.submit(i * 0.005, 20) for i in range(2000)]
    firsts = [t[0] for t in out]
    overtaken = sum(1 for i in range(len(firsts) - 1) if firsts[i] > firsts[i + 1])
    assert overtaken > 100 and m.stats.reordered == pytest.approx(400, rel=0.15)
    assert sum(len(t) == 2 for t in out) == m.stats.duplicated
    assert m.stats.duplicated == pytest.approx(200, rel=0.2)


def test_config_validation_json_and_label():
    cfg = LinkConfig(
        rate_bps=4000,
        delay_ms=20,
        burst=GilbertElliott.from_loss(0.2, 3),
        outages=(Outage(2.0, 5.0),),
    )
    assert LinkConfig.from_json(cfg.to_json()) == cfg
    assert cfg.mean_loss == pytest.approx(0.2)
    assert "4 kbit/s" in cfg.label() and "20% bursty" in cfg.label() and "outage 2-7" in cfg.label()
    for bad in (
        {"rate_bps": 0},
        {"loss": 1.5},
        {"delay_ms": -1},
        {"queue_bytes": 0},
        {"duplicate": -0.1},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LinkConfig(**bad)
    with pytest.raises(ValueError, match="duration_s"):
        Outage(1.0, 0.0)
    with pytest.raises(ValueError, match="unreachable"):
        GilbertElliott.from_loss(0.9, 1.0)
    assert math.isinf(GilbertElliott(0.0, 0.0).mean_burst_packets)
