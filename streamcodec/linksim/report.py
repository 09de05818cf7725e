"""Plots and the Markdown report of ``streamcodec simulate``.

Spectrograms come from :func:`streamcodec.eval.plots.spectrogram_grid`; this module
draws the link-specific pictures (quality against loss, wire bit/s and delivered
frames over time) and renders ``report.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from streamcodec.linksim.scenario import CallRecord, Direction, link_rates  # noqa: E402

_KIND_COLOURS = {"packet": "tab:green", "redundancy": "tab:blue", "concealed": "tab:red"}


def quality_vs_loss(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One panel per measure; a line per (codec, rate) over the loss axis."""
    panels = [
        (k, t)
        for k, t in (
            ("delivered_pct", "frames delivered (%)"),
            ("mel_distance", "mel distance (lower is better)"),
            ("pesq_wb", "PESQ-WB"),
            ("stoi", "STOI"),
        )
        if any(not math.isnan(r["metrics"].get(k, math.nan)) for r in rows)
    ]
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    rates = sorted({r["rate_bps"] for r in rows})
    styles = ["-", "--", ":", "-."]
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        for ci, codec in enumerate(codecs):
            for ri, rate in enumerate(rates):
                sel = sorted(
                    (r for r in rows if r["codec"] == codec and r["rate_bps"] == rate),
                    key=lambda r: r["loss"],
                )
                if not sel:
                    continue
                ax.plot(
                    [100 * r["loss"] for r in sel],
                    [r["metrics"].get(key, math.nan) for r in sel],
                    styles[ci % len(styles)],
                    marker="o",
                    ms=3,
                    color=cmap(ri / max(len(rates) - 1, 1)),
                    label=f"{codec} @ {rate / 1000:g} kbit/s",
                )
        ax.set_xlabel("bursty loss (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _frame_rates(d: Direction, duration_s: float, bin_s: float) -> dict[str, np.ndarray]:
    n = max(1, int(math.ceil(duration_s / bin_s)))
    out = {k: np.zeros(n) for k in _KIND_COLOURS}
    for t, k in zip(d.frames.times_s, d.frames.kinds, strict=True):
        b = int(t // bin_s)
        if 0 <= b < n:
            out[k][b] += 1.0 / bin_s
    return out


def timeline(rec: CallRecord, path: Path, title: str, bin_s: float = 0.5) -> Path | None:
    """Wire bit/s offered and delivered by the link, and frames/s played by kind (a→b)."""
    if not rec.directions:
        return None
    d = rec.directions[0]
    duration = max(rec.media_s, bin_s)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 4.6), sharex=True)
    if d.link is not None:
        t, offered, delivered = link_rates(d.link, d.link.epoch_s, duration, bin_s)
        ax1.step(t, offered / 1000, where="mid", label="offered", color="tab:orange")
        ax1.step(t, delivered / 1000, where="mid", label="delivered", color="tab:purple")
        rate = d.link.config.rate_bps
        if rate is not None:
            ax1.axhline(rate / 1000, color="grey", ls="--", lw=1, label="link rate")
        for o in d.link.config.outages:
            for ax in (ax1, ax2):
                ax.axvspan(o.start_s, o.start_s + o.duration_s, color="red", alpha=0.1)
    ax1.set_ylabel("a→b wire kbit/s")
    ax1.legend(fontsize=7, loc="upper right")
    ax1.grid(alpha=0.3)
    ax1.set_title(title, fontsize=10)
    rates = _frame_rates(d, duration, bin_s)
    t = (np.arange(len(rates["packet"])) + 0.5) * bin_s
    bottom = np.zeros_like(t)
    for kind, colour in _KIND_COLOURS.items():
        ax2.bar(t, rates[kind], bin_s, bottom=bottom, color=colour, label=kind, align="center")
        bottom += rates[kind]
    ax2.axhline(1.0 / d.frame_s, color="grey", ls="--", lw=1)
    ax2.set_ylabel("frames/s played")
    ax2.set_xlabel("seconds since media start")
    ax2.legend(fontsize=7, loc="lower right")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return fmt.format(value)


GRID_COLUMNS = (
    ("frames_per_message", "frames/msg", "{:.0f}"),
    ("payload_bps", "payload b/s", "{:.0f}"),
    ("wire_bps", "wire b/s a→b", "{:.0f}"),
    ("connect_s", "connect s", "{:.1f}"),
    ("link_drop_pct", "link drops %", "{:.1f}"),
    ("delivered_pct", "delivered %", "{:.1f}"),
    ("concealed_pct", "concealed %", "{:.1f}"),
    ("latency_p50_ms", "latency p50 ms", "{:.0f}"),
    ("latency_p95_ms", "p95 ms", "{:.0f}"),
    ("mel_distance", "mel dist ↓", "{:.3f}"),
    ("stft_distance", "STFT dist ↓", "{:.3f}"),
    ("pesq_wb", "PESQ-WB", "{:.2f}"),
    ("stoi", "STOI", "{:.3f}"),
)


def grid_table(rows: Sequence[dict[str, Any]], offline: dict[str, dict[str, float]]) -> str:
    """Markdown table: one line per cell, plus each codec without a network."""
    cols = [c for c in GRID_COLUMNS if any(c[0] in r["metrics"] for r in rows)]
    head = "| codec | link | loss | " + " | ".join(c[1] for c in cols) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(cols)]
    for codec, vals in offline.items():
        cells = [_fmt(vals.get(k), f) if k in vals else "" for k, _, f in cols]
        lines.append(f"| {codec} | no network | — | " + " | ".join(cells) + " |")
    for r in rows:
        cells = [_fmt(r["metrics"].get(k), f) for k, _, f in cols]
        lines.append(
            f"| {r['codec']} | {r['rate_bps'] / 1000:g} kbit/s | {100 * r['loss']:g}% | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


RELIABILITY_COLUMNS = (
    ("stayed_connected", "stayed connected", None),
    ("connect_s", "connect s", "{:.1f}"),
    ("duration_s", "call s", "{:.0f}"),
    ("frames_per_message", "frames/msg", "{:.0f}"),
    ("wire_bps", "wire b/s a→b", "{:.0f}"),
    ("link_drop_pct", "link drops %", "{:.1f}"),
    ("delivered_pct", "delivered %", "{:.1f}"),
    ("concealed_pct", "concealed %", "{:.1f}"),
    ("recovery_s", "recovery s", "{:.2f}"),
    ("delivered_after_pct", "delivered after outage %", "{:.1f}"),
    ("latency_p50_ms", "latency p50 ms", "{:.0f}"),
    ("latency_p95_ms", "p95 ms", "{:.0f}"),
    ("mel_distance", "mel dist ↓", "{:.3f}"),
    ("pesq_wb", "PESQ-WB", "{:.2f}"),
    ("stoi", "STOI", "{:.3f}"),
)


def reliability_table(rows: Sequence[dict[str, Any]]) -> str:
    cols = [c for c in RELIABILITY_COLUMNS if any(c[0] in r["metrics"] for r in rows)]
    lines = [
        "| run | codec | " + " | ".join(c[1] for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r["metrics"].get(key)
            if fmt is None:
                cells.append("—" if v is None else ("yes" if v else "**no**"))
            else:
                cells.append(_fmt(v, fmt))
        lines.append(f"| {r['name']} | {r['codec']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def concurrency_table(levels: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| calls | stayed connected | worst concealed % | worst late packets % | "
        "mean delivered % | input late p95 ms | loop lag p95 ms | process CPU % | "
        "CPU per call % | real time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        lines.append(
            f"| {lv['calls']} | {lv['stayed_connected']}/{lv['calls']} | "
            f"{_fmt(lv['worst_concealed_pct'], '{:.1f}')} | "
            f"{_fmt(lv['worst_late_pct'], '{:.1f}')} | "
            f"{_fmt(lv['mean_delivered_pct'], '{:.1f}')} | "
            f"{_fmt(lv['input_late_p95_ms'], '{:.1f}')} | {_fmt(lv['loop_lag_p95_ms'], '{:.1f}')}"
            f" | {lv['cpu_pct']:.0f} | {lv['cpu_pct'] / lv['calls']:.1f} | "
            f"{'yes' if lv['realtime'] else '**no**'} |"
        )
    return "\n".join(lines)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in text)


def _showcase(cells: Sequence[Any]) -> tuple[float, float, float] | None:
    """(rate, lowest loss, highest loss) of the cells whose spectrograms the report shows."""
    rates = sorted({c.rate_bps for c in cells})
    losses = sorted({c.loss for c in cells})
    if not rates:
        return None
    rate = 8000.0 if 8000.0 in rates else rates[len(rates) // 2]
    return rate, losses[0], losses[-1]


def write_report(
    out: Path,
    meta: dict[str, Any],
    cells: Sequence[Any],
    offline: dict[str, dict[str, float]],
    clock_check: dict[str, Any] | None,
    reliability: Sequence[Any],
    levels: Sequence[Any],
    clips: Sequence[np.ndarray],
    audio_s: float,
) -> dict[str, Any]:
    """Write plots, spectrograms, audio and ``report.md`` to ``out``; returns the summary."""
    from dataclasses import asdict

    from streamcodec.audio import save_audio
    from streamcodec.eval.align import align_to
    from streamcodec.eval.harness import machine_info
    from streamcodec.eval.plots import spectrogram_grid
    from streamcodec.registry import load

    plots, spec_dir, audio_dir = out / "plots", out / "spectrograms", out / "audio"
    for d in (plots, spec_dir, audio_dir):
        d.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "machine": machine_info()}
    grid = [
        {"codec": c.codec, "rate_bps": c.rate_bps, "loss": c.loss, "metrics": c.metrics}
        for c in cells
    ]
    rel_rows = [
        {
            "name": r.run.name,
            "description": r.run.description,
            "codec": r.codec,
            "metrics": r.metrics,
            "clock": "virtual" if r.record.virtual_clock else "real",
            "error": r.record.error,
        }
        for r in reliability
    ]
    level_rows = [asdict(lv) for lv in levels]
    summary = {
        "meta": meta,
        "offline": offline,
        "grid": grid,
        "clock_check": clock_check,
        "reliability": rel_rows,
        "concurrency": level_rows,
    }

    parts = [
        "# Link simulation: codec tokens over an impaired WebRTC data channel",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}; machine: {meta['machine']['cpu']}, "
        f"{meta['machine']['cores']} cores, Python {meta['machine']['python']}; load average "
        f"at the end {', '.join(f'{x:.1f}' for x in meta.get('load_average') or [])}"
        + (f"; ran at niceness {meta['nice']}" if meta.get("nice") else ""),
        f"- clips: {', '.join(meta['clips'])} ({', '.join(f'{s:g}' for s in meta['clip_seconds'])}"
        f" s) from `{meta['set']}`; peer a sends the first, b the second (two-way calls)",
        f"- wall time: grid {meta['grid_wall_s']:.0f} s, whole run {meta['total_wall_s']:.0f} s",
        "",
    ]
    if grid:
        parts += [
            "Each cell is a real aiortc call (ICE, DTLS, SCTP; unordered data channel, "
            "`maxRetransmits=0`) between two peers in one process, through the in-process UDP "
            "relay (`streamcodec.linksim`): per direction a drop-tail queue drained at the link "
            f"rate (serialisation delay), {meta['grid']['delay_ms']:g} ms ± "
            f"{meta['grid']['jitter_ms']:g} ms delay, and Gilbert-Elliott bursty loss (mean burst "
            f"{meta['grid']['mean_burst_packets']:g} datagrams) on every datagram: data, SACKs, "
            "FORWARD-TSNs and STUN consent checks alike. The packetiser plans frames per "
            "message from the link rate (duplex budget) and an RTT of twice the delay. "
            + (
                "The grid runs on a virtual clock (simulated time; DTLS handshake datagrams "
                "are spared from loss because OpenSSL's retransmission timer runs on the real "
                "clock), so it runs faster than real time. The link's random decisions and "
                "Python's `random` (aioice's consent-check timing) are seeded per cell, so a "
                "rerun on the virtual clock repeats each cell's drops and playout. Every cell "
                "uses the same seed (common random numbers), so cells differ by their settings "
                "more than by the luck of the draw; still, with one seed and 8 s clips a cell "
                "carries a few points of noise. "
                if meta["grid"]["virtual_clock"]
                else "The grid ran in real time. "
            ),
            "",
            "Columns: *wire b/s a→b* = bytes offered to the a→b link (IP/UDP included: data "
            "messages, SACKs for b's stream, consent checks, FORWARD-TSNs) per second of audio; "
            "*link drops* = datagrams the link dropped (queue, loss) of those offered; "
            "*delivered* = frames played from a packet or a redundant copy, *concealed* = "
            "frames the codec concealed (the rest were never played: a stall longer than the "
            "jitter buffer's 200 ms reset limit is silence); *latency* = capture of a frame's "
            "last sample to its playout (packetisation + queue + link + jitter buffer); "
            "quality is measured by `streamcodec.eval` on the decoded audio aligned to the "
            "input, averaged over both directions. `no network` rows are each codec's offline "
            "decode (the ceiling).",
            "",
        ]
        parts += ["## Summary table", "", grid_table(grid, offline), ""]
    if grid:
        quality_vs_loss(grid, plots / "quality_vs_loss.png")
        parts += [
            "## Quality against loss",
            "",
            "![quality vs loss](plots/quality_vs_loss.png)",
            "",
        ]

    show = _showcase(cells)
    if show is not None:
        rate, lo, hi = show
        parts += [
            f"## Wire bit/s and delivered frames over time ({rate / 1000:g} kbit/s, "
            f"{100 * hi:g}% bursty loss)",
            "",
        ]
        for c in cells:
            if c.rate_bps == rate and c.loss == hi:
                png = plots / f"timeline_{_slug(c.codec)}_{rate / 1000:g}k_{100 * hi:g}.png"
                if timeline(c.record, png, f"{c.codec}: {c.record.scenario.forward.label()}"):
                    parts.append(f"![{c.codec}](plots/{png.name})\n")
        parts += _spectrograms(
            cells,
            show,
            clips,
            audio_s,
            spec_dir,
            audio_dir,
            load,
            align_to,
            spectrogram_grid,
            save_audio,
        )

    if clock_check is not None:
        v, r = clock_check["virtual"], clock_check["real"]
        keys = [
            k
            for k in (
                "wire_bps",
                "link_drop_pct",
                "delivered_pct",
                "concealed_pct",
                "latency_p50_ms",
                "latency_p95_ms",
                "mel_distance",
                "pesq_wb",
            )
            if k in v
        ]
        parts += [
            "## Virtual against real clock",
            "",
            f"The cell {clock_check['codec']} @ {clock_check['rate_bps'] / 1000:g} kbit/s, "
            f"{100 * clock_check['loss']:g}% loss run again in real time (same seed; the "
            "datagram sequences differ slightly, e.g. consent-check timing, so the random "
            f"drops land on other datagrams). Wall time: virtual "
            f"{clock_check['virtual_wall_s']:.1f} s, real {clock_check['real_wall_s']:.1f} s "
            "(both include scoring).",
            "",
            "| clock | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
            "| virtual | " + " | ".join(_fmt(v.get(k), "{:.3g}") for k in keys) + " |",
            "| real | " + " | ".join(_fmt(r.get(k), "{:.3g}") for k in keys) + " |",
            "",
        ]

    if rel_rows:
        parts += [
            "## Reliability runs",
            "",
            "Real-time calls (ordinary event loop, no loss exemptions) through the same relay, "
            f"with {rel_rows[0]['codec']}:",
            "",
        ]
        parts += [f"- **{r['name']}**: {r['description']}" for r in rel_rows]
        parts += ["", reliability_table(rel_rows), ""]
        for r in reliability:
            png = plots / f"reliability_{_slug(r.run.name)}.png"
            if timeline(r.record, png, f"{r.run.name}: {r.run.description}"):
                parts.append(f"![{r.run.name}](plots/{png.name})\n")
        parts += _reliability_notes(rel_rows)
    if level_rows:
        parts += [
            "## Concurrent calls on one machine",
            "",
            f"N two-way {meta.get('concurrency_codec', '')} calls at once, both peers of each "
            "call in this one process (one asyncio event "
            "loop, so one core), directly on loopback, each side sending speech in real time "
            "(20 ms chunks, 16 kbit/s packetiser budget). A level stays real time when every "
            "call stays connected, no call conceals more than 1% of its frames nor gets more "
            "than 1% of its packets after their playout time, and the 95th percentile of "
            "input-chunk lateness (how late the event loop hands a 20 ms chunk to the encoder) "
            "is within one codec frame. Levels run in turn until two in a row miss. The "
            "machine is shared with other jobs; the load average above says how busy it was.",
            "",
            concurrency_table(level_rows),
            "",
        ]
        rt = [lv["calls"] for lv in level_rows if lv["realtime"]]
        # CPU per call from the largest level that kept up (a starved loop does less work)
        kept = [lv for lv in level_rows if lv["realtime"]] or level_rows[:1]
        top = max(kept, key=lambda lv: lv["calls"])
        per_call = top["cpu_pct"] / top["calls"]
        text = (
            f"**{max(rt)} concurrent call{'s' if max(rt) > 1 else ''} stayed real time** on this "
            "machine at this load. "
            if rt
            else "**No level stayed real time** on this machine at this load. "
        )
        text += (
            f"Each call cost {per_call:.1f}% of a core at {top['calls']} call"
            f"{'s' if top['calls'] > 1 else ''} (process CPU "
            f"time / wall time / calls): by CPU alone one free core would carry about "
            f"{100.0 / per_call:.0f} calls."
        )
        missed = [lv for lv in level_rows if not lv["realtime"]]
        if missed and missed[0]["cpu_pct"] < 80.0:
            text += (
                f" The first miss ({missed[0]['calls']} calls) came with this process using "
                f"only {missed[0]['cpu_pct']:.0f}% of a core, so it most likely waited for CPUs "
                "held by the other jobs on this shared machine."
            )
        parts += [text, ""]
    (out / "report.md").write_text("\n".join(parts))
    for png in [*plots.glob("*.png"), *spec_dir.glob("*.png")]:
        shrink_png(png)
    return summary


def shrink_png(path: Path, colours: int = 96) -> None:
    """Re-save a plot with a palette of ``colours`` (spectrograms shrink ~5x)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colours)
    small.save(path, optimize=True)


def _spectrograms(
    cells, show, clips, audio_s, spec_dir, audio_dir, load, align_to, spectrogram_grid, save_audio
) -> list[str]:
    rate, lo, hi = show
    ref = clips[0]
    n = int(audio_s * 16000)
    signals: dict[str, np.ndarray] = {"reference": ref}
    for codec_name in dict.fromkeys(c.codec for c in cells):
        codec = load(codec_name)
        off = codec.decode(codec.encode(ref))
        signals[f"{codec_name} offline"] = align_to(ref, off, codec.delay_samples, 1600)[0]
        for c in cells:
            if c.codec == codec_name and c.rate_bps == rate and c.loss in (lo, hi):
                if c.record.directions and c.record.directions[0].decoded.size:
                    dec = c.record.directions[0].decoded
                    label = f"{codec_name} {rate / 1000:g}k {100 * c.loss:g}%"
                    signals[label] = align_to(ref, dec, codec.delay_samples, 1600)[0]
    png = spectrogram_grid({k: v[:n] for k, v in signals.items()}, spec_dir / "clip0.png")
    links = []
    for label, pcm in signals.items():
        path = save_audio(audio_dir / f"{_slug(label)}.flac", pcm[:n])
        links.append(f"[{label}](audio/{path.name})")
    return [
        "## Spectrograms and decoded audio",
        "",
        f"First {audio_s:g} s of peer a's clip as b heard it ({rate / 1000:g} kbit/s link, "
        f"{100 * lo:g}% and {100 * hi:g}% bursty loss), next to each codec without a network.",
        "",
        f"![spectrograms](spectrograms/{png.name})",
        "",
        " · ".join(links),
        "",
    ]


def _reliability_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        m = r["metrics"]
        ok = bool(m.get("stayed_connected"))
        line = f"- {r['name']}: {'stayed connected' if ok else '**the connection was lost**'}"
        if r.get("error"):
            line += f" ({r['error']})"
        if "recovery_s" in m and m["recovery_s"] is not None and not math.isnan(m["recovery_s"]):
            line += (
                f"; frames flowed again {m['recovery_s']:.2f} s after the outage ended, and "
                f"{m.get('delivered_after_pct', math.nan):.1f}% of the frames captured from 1 s "
                "after it were delivered"
            )
        out.append(line + ".")
    return [*out, ""]
