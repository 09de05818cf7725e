"""The link-simulation sweep behind ``streamcodec simulate``: a grid of link rate ×
bursty loss × codec, plus reliability runs, each a real aiortc call through the
in-process :class:`~streamcodec.linksim.relay.LinkRelay`.

Quality numbers come from :mod:`streamcodec.eval` (``align_to`` and ``Scorers``);
this module only adds the transport measures (wire bit/s, delivered frames,
latency, connection state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamcodec.audio import load_audio
from streamcodec.codec import Codec
from streamcodec.eval.align import align_to
from streamcodec.eval.metrics import Scorers
from streamcodec.linksim import clock
from streamcodec.linksim.link import GilbertElliott, LinkConfig, Outage
from streamcodec.linksim.scenario import CallRecord, CallScenario, Direction, run_call
from streamcodec.manifest import read_manifest
from streamcodec.registry import list_codecs, load
from streamcodec.transport.packetiser import PacketiserConfig

logger = logging.getLogger(__name__)

#: codecs the sweep uses by default, best first, if registered when it runs
PREFERRED_CODECS = ("voice-700", "codec2-700c", "opus-6k")
DEFAULT_METRICS = ("mel_distance", "stft_distance", "pesq_wb", "stoi")
SAMPLE_RATE = 16000


def default_codecs() -> tuple[str, ...]:
    """The preferred codecs available now (``voice-700`` joins once its weights ship)."""
    names = set(list_codecs(available_only=True))
    return tuple(c for c in PREFERRED_CODECS if c in names)


def default_speech_dir() -> Path:
    """``../shared/data/dev/speech`` if present (from the working directory or the
    repository), else the speech clips bundled with the package."""
    here = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), here):
        candidate = base.parent / "shared" / "data" / "dev" / "speech"
        if (candidate / "manifest.tsv").exists():
            return candidate
    from streamcodec import assets

    return assets.speech_dir()


def speech_clips(set_dir: Path, count: int, clip_s: float) -> list[tuple[str, np.ndarray]]:
    """``count`` clips of at most ``clip_s`` s: the first long-enough file of each speaker
    in manifest order, then the longest remaining ones. ``[(name, [T] float32 16 kHz)]``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    entries = read_manifest(set_dir)
    long_enough = [e for e in entries if e.duration_s >= min(clip_s, 4.0)]
    chosen, speakers = [], set()
    for e in long_enough:
        if e.speaker not in speakers:
            chosen.append(e)
            speakers.add(e.speaker)
        if len(chosen) == count:
            break
    rest = sorted((e for e in entries if e not in chosen), key=lambda e: -e.duration_s)
    chosen += rest[: count - len(chosen)]
    n = int(clip_s * SAMPLE_RATE)
    return [(Path(e.rel_path).stem, load_audio(e.path, SAMPLE_RATE)[:n]) for e in chosen]


def looped(clips: Sequence[np.ndarray], seconds: float) -> np.ndarray:
    """Concatenate ``clips`` (repeating them) to exactly ``seconds`` of audio."""
    n = int(seconds * SAMPLE_RATE)
    parts, total = [], 0
    while total < n:
        for c in clips:
            parts.append(c)
            total += c.size
    return np.concatenate(parts)[:n].astype(np.float32)


@dataclass(frozen=True)
class GridConfig:
    """The default grid runs in about 2 minutes on 2 cores (simulated time)."""

    codecs: tuple[str, ...]
    rates_bps: tuple[float, ...] = (4000.0, 8000.0, 16000.0, 32000.0)
    #: mean Gilbert-Elliott loss per datagram, both directions
    losses: tuple[float, ...] = (0.0, 0.05, 0.10, 0.20)
    mean_burst_packets: float = 3.0
    delay_ms: float = 50.0
    jitter_ms: float = 5.0
    seed: int = 0
    virtual_clock: bool = True
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def link(self, rate_bps: float, loss: float) -> LinkConfig:
        burst = GilbertElliott.from_loss(loss, self.mean_burst_packets) if loss > 0 else None
        return LinkConfig(
            rate_bps=rate_bps, delay_ms=self.delay_ms, jitter_ms=self.jitter_ms, burst=burst
        )


def run_seeded(coro_fn: Callable[[], Any], virtual: bool, seed: int) -> Any:
    """Run one call on a fresh loop, virtual or real, after seeding Python's ``random``.

    The link model has its own generators; the global one drives the call stack's own
    randomness (aioice's consent-check intervals), so on the virtual clock the same seed
    gives the same drops and playout (DTLS handshake datagrams can differ by a byte, the
    length of an ECDSA signature, shifting times on a slow link by a millisecond).
    """
    random.seed(seed)
    if virtual:
        return clock.run(coro_fn)
    return asyncio.run(coro_fn())


def offered_wire_bps(d: Direction, duration_s: float) -> float | None:
    """Wire bit/s offered to the link by this direction's sender over the audio's span."""
    if d.link is not None:
        t0 = d.link.epoch_s
        bits = sum(8 * r.wire_bytes for r in d.link.records if t0 <= r.offered_s < t0 + duration_s)
        return bits / duration_s
    if d.sender is not None and d.sender.elapsed_s > 0:
        return 8.0 * d.sender.wire_sent.wire_bytes / d.sender.elapsed_s
    return None


def direction_metrics(d: Direction, codec: Codec, scorers: Scorers) -> dict[str, float]:
    """Transport and quality measures of one direction (means are taken by the caller)."""
    ref = d.sent_pcm
    duration_s = ref.size / codec.sample_rate
    deg = d.decoded if d.decoded.size else np.zeros_like(ref)
    aligned, lag = align_to(ref, deg, codec.delay_samples, int(0.1 * codec.sample_rate))
    out: dict[str, float] = {"lag_ms": 1000.0 * lag / codec.sample_rate}
    out.update(scorers.intrusive(ref, aligned))
    total = max(d.frames_total, 1)
    played = d.frames_by_kind("packet") + d.frames_by_kind("redundancy")
    out["delivered_pct"] = 100.0 * played / total
    out["concealed_pct"] = 100.0 * d.frames_by_kind("concealed") / total
    delays = d.playout_delays_s()
    out["latency_p50_ms"] = 1000.0 * float(np.median(delays)) if delays.size else math.nan
    out["latency_p95_ms"] = 1000.0 * float(np.percentile(delays, 95)) if delays.size else math.nan
    if d.sender is not None:
        tx = d.sender.tx
        out["payload_bps"] = tx.payload_bits / duration_s
        out["frames_per_message"] = float(d.sender.plan.frames_per_message)
        out["pacer_dropped"] = float(tx.messages_dropped)
    if d.receiver is not None and d.receiver.rx.packets_expected:
        rx = d.receiver.rx
        out["packet_loss_pct"] = 100.0 * rx.packets_lost / rx.packets_expected
    wire = offered_wire_bps(d, duration_s)
    if wire is not None:
        out["wire_bps"] = wire
    if d.link is not None:
        st = d.link.stats
        out["link_drop_pct"] = 100.0 * st.dropped / max(st.offered, 1)
    return out


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """The spectral distances run on torch; on a busy 2-core machine its default thread
    pool is ~15x slower than one thread for these small STFTs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def record_metrics(rec: CallRecord, codec: Codec, scorers: Scorers) -> dict[str, float]:
    """Means over the record's directions, plus connection facts."""
    with _torch_threads(1):
        rows = [direction_metrics(d, codec, scorers) for d in rec.directions]
    out: dict[str, float] = {}
    for key in {k for r in rows for k in r}:
        vals = [r[key] for r in rows if key in r and not math.isnan(r[key])]
        out[key] = float(np.mean(vals)) if vals else math.nan
    out["connect_s"] = rec.connect_s
    out["connected"] = float(rec.connected)
    out["stayed_connected"] = float(rec.stayed_connected)
    return out


@dataclass
class CellResult:
    codec: str
    rate_bps: float
    loss: float
    metrics: dict[str, float]
    record: CallRecord
    wall_s: float


def offline_metrics(codec: Codec, clips: Sequence[np.ndarray], scorers: Scorers) -> dict:
    """The codec without a network (the ceiling of each grid row)."""
    rows = []
    for ref in clips:
        out = codec.decode(codec.encode(ref))
        aligned, _ = align_to(ref, out, codec.delay_samples, int(0.1 * codec.sample_rate))
        with _torch_threads(1):
            rows.append(scorers.intrusive(ref, aligned))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def run_grid(
    cfg: GridConfig,
    clips: Sequence[np.ndarray],
    progress: Callable[[str], None] | None = None,
) -> list[CellResult]:
    """Every (codec, rate, loss) cell: a two-way call, a sends clip 0, b sends clip 1."""
    if len(clips) < 1:
        raise ValueError("need at least one clip")
    pcm_a, pcm_b = clips[0], clips[1 % len(clips)]
    scorers = Scorers(cfg.metrics, True, None)
    results: list[CellResult] = []
    for name in cfg.codecs:
        codec = load(name)
        for rate in cfg.rates_bps:
            for loss in cfg.losses:
                scenario = CallScenario(forward=cfg.link(rate, loss), seed=cfg.seed)
                t0 = time.monotonic()
                rec = run_seeded(
                    lambda s=scenario, c=codec: run_call(s, c, pcm_a, pcm_b),
                    cfg.virtual_clock,
                    cfg.seed,
                )
                metrics = record_metrics(rec, codec, scorers)
                wall = time.monotonic() - t0
                results.append(CellResult(name, rate, loss, metrics, rec, wall))
                if progress is not None:
                    progress(
                        f"{name:12s} {rate / 1000:4g} kbit/s {100 * loss:4.0f}% loss: "
                        f"delivered {metrics.get('delivered_pct', math.nan):5.1f}%, "
                        f"mel {metrics.get('mel_distance', math.nan):.3f} ({wall:.1f} s)"
                    )
    return results


# -- reliability runs ------------------------------------------------------------------------
@dataclass(frozen=True)
class ReliabilityRun:
    name: str
    description: str
    scenario: CallScenario
    duration_s: float
    #: outage end (s after media start) to time the recovery from
    recovery_after_s: float | None = None


def reliability_runs(quick: bool = False) -> list[ReliabilityRun]:
    """The issue's three link cases (``quick``: much shorter calls, for tests)."""
    k = 0.25 if quick else 1.0
    outage_start, outage_s = 8.0 * k, 5.0
    return [
        ReliabilityRun(
            "bursty-30",
            "30% bursty loss (Gilbert-Elliott, mean burst 4 datagrams) both ways, "
            "16 kbit/s, 50 ms ±5 ms",
            CallScenario(
                forward=LinkConfig(
                    rate_bps=16000, delay_ms=50, jitter_ms=5, burst=GilbertElliott.from_loss(0.3, 4)
                ),
                seed=7,
            ),
            20.0 * k,
        ),
        ReliabilityRun(
            "outage-5s",
            f"{outage_s:g} s outage (nothing delivered either way) from t = {outage_start:g} s, "
            "16 kbit/s, 50 ms ±5 ms",
            CallScenario(
                forward=LinkConfig(
                    rate_bps=16000,
                    delay_ms=50,
                    jitter_ms=5,
                    outages=(Outage(outage_start, outage_s),),
                ),
                seed=8,
            ),
            outage_start + outage_s + 12.0 * k,
            recovery_after_s=outage_start + outage_s,
        ),
        ReliabilityRun(
            "slow-2k",
            "2 kbit/s each way, 500 ms one-way delay (1 s RTT), one-way speech, "
            "message interval >= RTT",
            CallScenario(
                forward=LinkConfig(rate_bps=2000, delay_ms=500),
                packetiser=PacketiserConfig(link_budget_bps=2000, rtt_ms=1000, duplex=False),
                two_way=False,
                seed=9,
            ),
            60.0 * k,
        ),
    ]


def recovery_s(d: Direction, after_s: float) -> float:
    """Seconds from ``after_s`` to the first frame released from a packet after it."""
    for t, k in zip(d.frames.times_s, d.frames.kinds, strict=True):
        if t >= after_s and k != "concealed":
            return t - after_s
    return math.nan


@dataclass
class ReliabilityResult:
    run: ReliabilityRun
    codec: str
    metrics: dict[str, float]
    record: CallRecord


def run_reliability(
    runs: Sequence[ReliabilityRun],
    codec_name: str,
    clips: Sequence[np.ndarray],
    virtual_clock: bool = False,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    progress: Callable[[str], None] | None = None,
) -> list[ReliabilityResult]:
    codec = load(codec_name)
    scorers = Scorers(metrics, True, None)
    out = []
    for i, run in enumerate(runs):
        pcm_a = looped(clips, run.duration_s)
        pcm_b = looped(list(clips[1:]) + list(clips[:1]), run.duration_s)
        rec = run_seeded(
            lambda r=run, a=pcm_a, b=pcm_b: run_call(r.scenario, codec, a, b),
            virtual_clock,
            run.scenario.seed,
        )
        m = record_metrics(rec, codec, scorers)
        if run.recovery_after_s is not None and rec.directions:
            m["recovery_s"] = float(
                np.nanmax([recovery_s(d, run.recovery_after_s) for d in rec.directions])
            )
            m["delivered_after_pct"] = float(
                np.mean([_delivered_after(d, run.recovery_after_s + 1.0) for d in rec.directions])
            )
        m["duration_s"] = run.duration_s
        out.append(ReliabilityResult(run, codec_name, m, rec))
        if progress is not None:
            progress(
                f"reliability {i + 1}/{len(runs)} {run.name}: connected "
                f"{bool(m['stayed_connected'])}, delivered {m.get('delivered_pct', math.nan):.1f}%"
                f" ({rec.wall_s:.0f} s)"
            )
    return out


def _delivered_after(d: Direction, after_s: float) -> float:
    """Percent of frames captured after ``after_s`` that were released from packets."""
    first = int(math.ceil(after_s / d.frame_s))
    total = d.frames_total - first
    got = sum(
        1
        for i, k in zip(d.frames.indices, d.frames.kinds, strict=True)
        if i >= first and k != "concealed"
    )
    return 100.0 * got / total if total > 0 else math.nan


# -- concurrency ------------------------------------------------------------------------------
@dataclass
class ConcurrencyLevel:
    calls: int
    connected: int
    stayed_connected: int
    worst_concealed_pct: float
    #: packets that arrived after their frames were due, worst call, % of received
    worst_late_pct: float
    mean_delivered_pct: float
    input_late_p95_ms: float
    loop_lag_p95_ms: float
    cpu_pct: float
    wall_s: float
    realtime: bool
    details: dict[str, Any] = field(default_factory=dict)


#: a level stays real time when every call stays connected, no call conceals more than this
#: percentage of its frames nor gets more than this percentage of its packets too late for
#: playout, and the 95th percentile of input-chunk lateness stays within one codec frame
REALTIME_MAX_CONCEALED_PCT = 1.0
REALTIME_MAX_LATE_PCT = 1.0


async def _concurrent_calls(n: int, codec: Codec, pcm_a: np.ndarray, pcm_b: np.ndarray):
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:  # event-loop lag: how late a 10 ms sleep wakes up
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - t - 0.01)

    scenario = CallScenario(forward=None, packetiser=PacketiserConfig(), connect_timeout_s=60.0)
    task = asyncio.create_task(probe())
    try:
        recs = await asyncio.gather(*(run_call(scenario, codec, pcm_a, pcm_b) for _ in range(n)))
    finally:
        stop.set()
        await task
    return recs, lags


def run_concurrency(
    codec_name: str,
    clips: Sequence[np.ndarray],
    levels: Sequence[int] = (1, 2, 4, 8, 16, 32),
    seconds: float = 8.0,
    progress: Callable[[str], None] | None = None,
) -> list[ConcurrencyLevel]:
    """N two-way loopback calls in one process (one event loop, real time) per level.

    Goes on past a level that misses real time (on a shared machine that can be other
    jobs' doing) and stops after two such levels in a row, when a call fails to stay
    connected, or when the process used more than 90% of a core."""
    codec = load(codec_name)
    pcm_a = looped(clips, seconds)
    pcm_b = looped(list(clips[1:]) + list(clips[:1]), seconds)
    out = []
    misses = 0
    for n in levels:
        cpu0, wall0 = time.process_time(), time.monotonic()
        recs, lags = asyncio.run(_concurrent_calls(n, codec, pcm_a, pcm_b))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        dirs = [d for r in recs for d in r.directions]
        concealed = [100.0 * d.frames_by_kind("concealed") / max(d.frames_total, 1) for d in dirs]
        delivered = [
            100.0
            * (d.frames_by_kind("packet") + d.frames_by_kind("redundancy"))
            / max(d.frames_total, 1)
            for d in dirs
        ]
        late = [x for d in dirs for x in d.input_lateness_s]
        late_pkts = [
            100.0 * d.receiver.rx.packets_late / max(d.receiver.rx.packets_received, 1)
            for d in dirs
            if d.receiver is not None
        ]
        level = ConcurrencyLevel(
            calls=n,
            connected=sum(r.connected for r in recs),
            stayed_connected=sum(r.stayed_connected for r in recs),
            worst_concealed_pct=max(concealed) if concealed else math.nan,
            worst_late_pct=max(late_pkts) if late_pkts else math.nan,
            mean_delivered_pct=float(np.mean(delivered)) if delivered else math.nan,
            input_late_p95_ms=1000.0 * float(np.percentile(late, 95)) if late else math.nan,
            loop_lag_p95_ms=1000.0 * float(np.percentile(lags, 95)) if lags else math.nan,
            cpu_pct=100.0 * cpu / wall,
            wall_s=wall,
            realtime=False,
            details={"errors": [r.error for r in recs if r.error]},
        )
        level.realtime = (
            level.stayed_connected == n
            and level.worst_concealed_pct <= REALTIME_MAX_CONCEALED_PCT
            and level.worst_late_pct <= REALTIME_MAX_LATE_PCT
            and level.input_late_p95_ms <= 1000.0 * codec.frame_duration_s
        )
        out.append(level)
        if progress is not None:
            progress(
                f"concurrency {n:3d} calls: connected {level.stayed_connected}/{n}, worst "
                f"concealed {level.worst_concealed_pct:.1f}%, late packets "
                f"{level.worst_late_pct:.1f}%, input late p95 "
                f"{level.input_late_p95_ms:.1f} ms, CPU {level.cpu_pct:.0f}% -> "
                f"{'real time' if level.realtime else 'NOT real time'}"
            )
        misses = 0 if level.realtime else misses + 1
        if misses >= 2 or level.stayed_connected < n or level.cpu_pct > 90.0:
            break
    return out


def level_dict(level: ConcurrencyLevel) -> dict[str, Any]:
    return asdict(level)
