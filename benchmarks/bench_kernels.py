"""Benchmark the Triton kernels against SDPA, eager torch and torch.compile.

Parts (run one per process by ``run_gpu_kernels.sh``, each under its own time
limit; every part appends CSV rows as it goes, so a part that runs out of time
still leaves what it measured):

- ``env``: GPU name, SM count, torch/triton/CUDA/driver versions -> env.json;
- ``copy``: device-to-device copy bandwidth (the memory-bound ceiling) -> copy.csv;
- ``launch``: launch floor of a one-element Triton kernel and torch op -> launch.csv;
- ``attention``: model shapes + an N 1k-8k sweep -> attention.csv;
- ``gn``: fused GroupNorm+modulate+SiLU at decoder shapes + a sweep -> gn.csv;
- ``summary``: Markdown tables and the issue's bars -> kernels.md.

Times are medians in ms, three ways: ``cold`` = CUDA events around each call, L2
flushed and the GPU kept busy (``torch.cuda._sleep``) until the call is queued:
device time, cold cache, no host launch latency (see ``Timer.cold``),
``graph`` = do_bench_cudagraph (calls replayed from a CUDA graph: device time,
warm L2, no launch overhead), ``loop`` = back-to-back eager calls (includes the
host's launch overhead when the op is launch-bound: what an un-graphed server pays).

``--device cpu --dry-run`` runs tiny shapes through Triton's interpreter to test
the plumbing (numbers meaningless). Never asserted in CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from streamcodec.kernels.attention import attention_reference, key_limits, visible_mask  # noqa: E402
from streamcodec.kernels.unet_step import group_norm_modulate_silu_reference  # noqa: E402

from streamcodec import ops  # noqa: E402

# --- shapes ---


@dataclass(frozen=True)
class AttnShape:
    group: str  # "model" or "sweep"
    name: str
    batch: int
    heads: int
    n_q: int
    n_k: int
    head_d: int
    mask: str
    chunk: int | None = None
    lookahead: int = 0


def attention_shapes(dry_run: bool) -> list[AttnShape]:
    """Model shapes (planned by the lead) first, then the sweep.

    Semantic encoder (ViT d_model 384, 6 heads, D 64): streaming with a KV cache,
    block-causal chunks of 8 with 1 look-ahead chunk, Nq in {8, 32, 250} new
    queries against Nk in {250, 500} keys; offline none/causal at N 250/500.
    Diffusion decoder UNet mid attention (D 64, 6 heads): N 50 and 100,
    no mask and block-causal chunks of 25. B·H = 6 (one stream) or 384 (64 streams).
    """
    if dry_run:
        return [
            AttnShape("model", "enc-stream", 1, 2, 8, 40, 64, "block_causal", 8, 1),
            AttnShape("model", "dec-mid", 2, 2, 20, 20, 64, "none"),
            AttnShape("sweep", "sweep", 1, 1, 64, 64, 32, "causal"),
        ]
    shapes = []
    for batch in (1, 64):
        tag = f"b{batch}"
        for n_q, n_k in ((8, 250), (8, 500), (32, 250), (32, 500), (250, 250), (250, 500)):
            shapes.append(
                AttnShape(
                    "model", f"enc-stream-{tag}", batch, 6, n_q, n_k, 64, "block_causal", 8, 1
                )
            )
        for n in (250, 500):
            for mask in ("none", "causal"):
                shapes.append(AttnShape("model", f"enc-offline-{tag}", batch, 6, n, n, 64, mask))
        for n in (50, 100):
            shapes.append(AttnShape("model", f"dec-mid-{tag}", batch, 6, n, n, 64, "none"))
            shapes.append(
                AttnShape("model", f"dec-mid-{tag}", batch, 6, n, n, 64, "block_causal", 25, 0)
            )
    for head_d in (64, 128):
        for n in (1024, 2048, 4096, 8192):
            for mask in ("none", "causal"):
                shapes.append(AttnShape("sweep", f"sweep-d{head_d}", 2, 8, n, n, head_d, mask))
    for n in (1024, 4096):
        shapes.append(AttnShape("sweep", "sweep-block64", 2, 8, n, n, 64, "block_causal", 64, 1))
    return shapes


@dataclass(frozen=True)
class GnShape:
    group: str
    name: str
    shape: tuple[int, ...]
    groups: int = 32
    residual: bool = False


def gn_shapes(dry_run: bool) -> list[GnShape]:
    """Decoder UNet ([B, C, T], (C, T) in (128, 200), (256, 100), (384, 50), B in 1/16/64,
    32 groups, scale/shift from the time embedding) first, then larger 1-D and 2-D maps."""
    if dry_run:
        return [GnShape("model", "dec", (2, 16, 20), 4), GnShape("sweep", "map", (1, 8, 6, 6), 4)]
    shapes = [
        GnShape("model", f"dec-c{c}", (b, c, t))
        for b in (1, 16, 64)
        for c, t in ((128, 200), (256, 100), (384, 50))
    ]
    shapes.append(GnShape("model", "dec-c256+res", (16, 256, 100), residual=True))
    for shape in (
        (8, 512, 2000),
        (32, 256, 4000),
        (1, 512, 64, 64),
        (4, 320, 64, 64),
        (1, 512, 128, 128),
        (1, 256, 256, 256),
        (1, 128, 512, 512),
    ):
        shapes.append(GnShape("sweep", "large", shape))
    return shapes


# --- timing ---

#: busy-wait before each cold call: ~150 us at 2 GHz, which with the ~70 us flush is several
#: times a host launch through a Python wrapper
GPU_WAIT_CYCLES = 300_000


class Timer:
    """Three medians per op (see module docstring); CPU dry runs use perf_counter."""

    def __init__(self, device: str, dry_run: bool) -> None:
        self.cuda = device == "cuda"
        self.rep_ms = 2 if dry_run else 15  # do_bench repetition window
        self.window_ms = 1 if dry_run else 4  # per graph replay / loop trial

    def cold(self, fn: Callable[[], object]) -> float:
        """Device time with a cold L2: flush, then a GPU busy-wait, then the timed call.

        ``triton.testing.do_bench`` flushes L2 and times each call with events, but the GPU
        can finish the ~70 us flush before a slow host has enqueued the call (a Python
        wrapper plus the launch take 20-60 us); then the host's launch latency is inside the
        timed interval. That is the likely cause of the first H200 run's outliers: 25 us
        "cold" for a 51 KB GroupNorm whose graph replay took 2 us, 4.6 us for a larger one.
        ``torch.cuda._sleep`` keeps the GPU busy until the start event, the call and the end
        event are all queued.
        """
        if not self.cuda:
            return self._cpu(fn)
        sleep = getattr(torch.cuda, "_sleep", None)
        if sleep is None:  # a torch without the busy-wait: fall back to triton's timer
            import triton.testing

            return float(
                triton.testing.do_bench(fn, warmup=5, rep=self.rep_ms, return_mode="median")
            )
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(4):
            fn()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        flush = torch.empty(256 * 1024 * 1024 // 4, dtype=torch.int32, device="cuda")
        per_rep_ms = start.elapsed_time(end) + 0.25  # + flush and busy-wait
        reps = max(5, min(100, int(2 * self.rep_ms / per_rep_ms)))  # ~30 ms per op
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(reps)
        ]
        for start, end in events:
            flush.zero_()
            sleep(GPU_WAIT_CYCLES)
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return statistics.median(start.elapsed_time(end) for start, end in events)

    def graph(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            return math.nan
        import triton.testing

        return float(
            triton.testing.do_bench_cudagraph(fn, rep=self.window_ms, return_mode="median")
        )

    def loop(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            return self._cpu(fn)
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        n = max(3, min(2000, int(self.window_ms / max(start.elapsed_time(end), 1e-3))))
        trials = []
        for _ in range(5):
            start.record()
            for _ in range(n):
                fn()
            end.record()
            torch.cuda.synchronize()
            trials.append(start.elapsed_time(end) / n)
        return statistics.median(trials)

    def all(self, fn: Callable[[], object]) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        notes = []
        for name, how in (("ms_cold", self.cold), ("ms_graph", self.graph), ("ms_loop", self.loop)):
            try:
                out[name] = how(fn)
            except Exception as exc:  # keep going: one failing mode must not stop the part
                out[name] = math.nan
                notes.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")
        out["note"] = "; ".join(notes)
        return out

    @staticmethod
    def _cpu(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)


class CsvSink:
    """Append rows to a CSV as they are measured (flushed), with a fixed header."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        self.fields = fields
        fresh = not path.exists()
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=fields, extrasaction="ignore")
        if fresh:
            self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow({k: _fmt(row.get(k, "")) for k in self.fields})
        self.file.flush()


def _fmt(v: object) -> object:
    return f"{v:.6g}" if isinstance(v, float) else v


def _setup_compile() -> None:
    import torch._dynamo

    for name in (
        "cache_size_limit",
        "recompile_limit",
        "accumulated_cache_size_limit",
        "accumulated_recompile_limit",
    ):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 1024)


# --- parts ---


def part_env(args: argparse.Namespace) -> None:
    import triton

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda_runtime": torch.version.cuda,
        "device": args.device,
        "interpreter": os.environ.get("TRITON_INTERPRET") == "1",
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            sm_count=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
        )
        try:
            smi = [
                "nvidia-smi",
                "--query-gpu=driver_version,clocks.max.sm",
                "--format=csv,noheader",
            ]
            info["driver_and_max_sm_clock"] = subprocess.run(
                smi, capture_output=True, text=True, timeout=20
            ).stdout.strip()
        except Exception as exc:
            info["driver_and_max_sm_clock"] = f"n/a ({type(exc).__name__})"
    else:
        info["gpu"] = f"none (CPU: {platform.processor() or platform.machine()})"
    (args.out / "env.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


def part_copy(args: argparse.Namespace) -> None:
    timer = Timer(args.device, args.dry_run)
    sink = CsvSink(args.out / "copy.csv", ["mib", "ms_cold", "ms_graph", "ms_loop", "gbps", "note"])
    sizes_mib = (1,) if args.dry_run else (4, 64, 1024)
    for mib in sizes_mib:
        src = torch.randn(mib * 2**18, device=args.device)  # fp32: 2**18 elements per MiB
        dst = torch.empty_like(src)
        t = timer.all(lambda src=src, dst=dst: dst.copy_(src))
        gbps = 2 * src.numel() * 4 / (t["ms_cold"] * 1e-3) / 1e9
        sink.write({"mib": mib, **t, "gbps": gbps})
        print(f"copy {mib} MiB: {t['ms_cold']:.4f} ms cold, {gbps:.0f} GB/s (read + write)")


def part_launch(args: argparse.Namespace) -> None:
    """Launch floor: a one-element Triton kernel vs a one-element torch op (host overhead)."""
    import triton
    import triton.language as tl

    @triton.jit
    def _touch(ptr):
        tl.store(ptr, tl.load(ptr) + 1.0)

    timer = Timer(args.device, args.dry_run)
    sink = CsvSink(args.out / "launch.csv", ["impl", "ms_cold", "ms_graph", "ms_loop", "note"])
    x = torch.zeros(1, device=args.device)
    for impl, fn in (
        ("triton-1-element", lambda: _touch[(1,)](x)),
        ("torch-1-element", lambda: x.add_(1.0)),
    ):
        fn()
        sink.write({"impl": impl, **timer.all(fn)})


def _sdpa_call(q, k, v, s: AttnShape) -> tuple[Callable[[], torch.Tensor], str]:
    """The fastest way to express the mask to SDPA, and the backend SDPA picks for it."""
    from torch.nn.attention.bias import CausalBias, causal_lower_right

    attn_mask: object = None
    is_causal = False
    if s.mask == "causal" and s.n_q == s.n_k:
        is_causal = True
    elif s.mask == "causal":
        attn_mask = causal_lower_right(s.n_q, s.n_k)
    elif s.mask == "block_causal":
        attn_mask = visible_mask(s.n_q, s.n_k, s.mask, s.chunk, s.lookahead, q.device)

    def call() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)

    names = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}
    try:
        if isinstance(attn_mask, CausalBias):
            from torch.backends.cuda import (
                SDPAParams,
                can_use_efficient_attention,
                can_use_flash_attention,
            )

            params = SDPAParams(q, k, v, None, 0.0, False, False)
            backend = (
                "flash"
                if can_use_flash_attention(params)
                else "efficient"
                if can_use_efficient_attention(params)
                else "math"
            )
            backend += " (lower-right causal)"
        else:
            choice = torch._fused_sdp_choice(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=0.0,
                is_causal=is_causal,
                scale=None,
                enable_gqa=False,
            )
            backend = names.get(int(choice), str(choice))
    except Exception as exc:
        backend = f"unknown ({type(exc).__name__})"
    return call, backend


def _eager_attention(q, k, v, bias):
    """softmax(q kᵀ·scale + bias) v with plain torch ops (scores materialised)."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


def part_attention(args: argparse.Namespace) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    deadline = time.monotonic() + args.budget_s
    compile_deadline = time.monotonic() + args.compile_budget_s
    timer = Timer(args.device, args.dry_run)
    fields = [
        "group",
        "name",
        "dtype",
        "batch",
        "heads",
        "n_q",
        "n_k",
        "head_d",
        "mask",
        "chunk",
        "lookahead",
        "impl",
        "backend",
        "ms_cold",
        "ms_graph",
        "ms_loop",
        "tflops_cold",
        "max_err",
        "config",
        "note",
    ]
    sink = CsvSink(args.out / "attention.csv", fields)
    compiled = None
    if args.compile:
        _setup_compile()
        compiled = torch.compile(_eager_attention, dynamic=True)
    per_backend = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }
    # Priority order (a part cut by its time budget keeps the most important rows):
    # model shapes in the primary dtype, the sweep, then model shapes in the other dtypes.
    shapes, primary = attention_shapes(args.dry_run), args.dtypes[0]
    plan = [(s, primary) for s in shapes if s.group == "model"]
    plan += [(s, primary) for s in shapes if s.group == "sweep"]
    plan += [(s, dt) for dt in args.dtypes[1:] for s in shapes if s.group == "model"]
    for s, dtype_name in plan:
        base = {**asdict(s), "dtype": dtype_name}
        if time.monotonic() > deadline:
            sink.write({**base, "impl": "all", "note": "skipped: part time budget"})
            continue
        dtype = getattr(torch, dtype_name)
        gen = torch.Generator(device=args.device).manual_seed(0)
        q, k, v = (
            torch.randn(
                s.batch, s.heads, n, s.head_d, device=args.device, dtype=dtype, generator=gen
            )
            for n in (s.n_q, s.n_k, s.n_k)
        )
        pairs = int(key_limits(s.n_q, s.n_k, s.mask, s.chunk, s.lookahead).sum())
        flops = 4.0 * s.batch * s.heads * s.head_d * pairs  # visible (query, key) pairs only
        mask_kw = dict(mask=s.mask, chunk_size=s.chunk, lookahead_chunks=s.lookahead)
        truth = attention_reference(q.float(), k.float(), v.float(), **mask_kw)
        bias = None
        if s.mask != "none":
            allowed = visible_mask(s.n_q, s.n_k, s.mask, s.chunk, s.lookahead, q.device)
            bias = torch.zeros(allowed.shape, device=q.device).masked_fill(~allowed, -math.inf)

        def run_triton(q=q, k=k, v=v, mask_kw=mask_kw):
            return ops.attention(q, k, v, **mask_kw, force_triton=not timer.cuda)

        sdpa, backend = _sdpa_call(q, k, v, s)
        impls: list[tuple[str, str, Callable[[], torch.Tensor]]] = [
            ("triton", "triton", run_triton),
            ("sdpa", backend, sdpa),
        ]
        # Materialised scores: informative at model sizes, seconds of budget at N >= 4k.
        small = s.n_q * s.n_k <= 2048 * 2048
        if small:
            impls.append(
                ("eager", "torch ops", lambda q=q, k=k, v=v, b=bias: _eager_attention(q, k, v, b))
            )
        if timer.cuda and s.group == "model" and dtype_name == primary:
            for bname, b in per_backend.items():

                def forced(b=b, sdpa=sdpa):
                    with sdpa_kernel([b]):
                        return sdpa()

                impls.append((f"sdpa-{bname}", bname, forced))
        if compiled is not None and dtype_name == primary and small:
            if time.monotonic() < compile_deadline:
                impls.append(
                    (
                        "compile",
                        "inductor dynamic",
                        lambda q=q, k=k, v=v, b=bias: compiled(q, k, v, b),
                    )
                )
            else:
                sink.write({**base, "impl": "compile", "note": "skipped: compile time budget"})
        for impl, backend_name, fn in impls:
            row = {**base, "impl": impl, "backend": backend_name}
            try:
                out = fn()  # first call: compile/autotune outside the timings
                if timer.cuda:
                    torch.cuda.synchronize()
                row["max_err"] = (out.float() - truth).abs().max().item()
                row.update(timer.all(fn))
                row["tflops_cold"] = flops / (row["ms_cold"] * 1e-3) / 1e12
            except Exception as exc:
                row["note"] = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
            if impl == "triton":
                row["backend"] = ops.last_backend("attention")
                row["config"] = _attn_config(q, s)
            sink.write(row)
        tri = _read_last(args.out / "attention.csv", "triton")
        print(
            f"attn {s.name} {dtype_name} {s.mask} Nq={s.n_q} Nk={s.n_k} BH={s.batch * s.heads}: "
            f"triton {tri}  sdpa[{backend}]",
            flush=True,
        )
        del q, k, v, truth, bias


def _attn_config(q: torch.Tensor, s: AttnShape) -> str:
    if q.device.type != "cuda":
        return "interpreter"
    from streamcodec.kernels.attention import kernel

    if not kernel.autotune_enabled():
        return f"heuristic {kernel.heuristic_config(s.n_q, s.n_k, s.batch * s.heads)}"
    for key, cfg in kernel.chosen_configs().items():
        if (
            key[3] == s.head_d
            and key[4] == kernel.MASK_CODES[s.mask]
            and key[6] == q.dtype
            and key[0] == kernel._bucket(s.n_q, 256)
            and key[1] == kernel._bucket(s.n_k, 4096)
            and key[2] == kernel._bucket(s.batch * s.heads, 512)
        ):
            return str(cfg)
    return "?"


def _read_last(path: Path, impl: str) -> str:
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r["impl"] == impl]
    return f"{rows[-1].get('ms_cold', '?')} ms" if rows else "?"


def part_gn(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.budget_s
    compile_deadline = time.monotonic() + args.compile_budget_s
    timer = Timer(args.device, args.dry_run)
    fields = [
        "group",
        "name",
        "dtype",
        "shape",
        "groups",
        "residual",
        "impl",
        "plan",
        "bytes",
        "ms_cold",
        "ms_graph",
        "ms_loop",
        "gbps_cold",
        "max_err",
        "note",
    ]
    sink = CsvSink(args.out / "gn.csv", fields)
    compiled = None
    if args.compile:
        _setup_compile()
        compiled = torch.compile(group_norm_modulate_silu_reference, dynamic=False)
    shapes, primary = gn_shapes(args.dry_run), args.gn_dtypes[0]
    plan = [(s, primary) for s in shapes if s.group == "model"]
    plan += [(s, primary) for s in shapes if s.group == "sweep"]
    plan += [(s, dt) for dt in args.gn_dtypes[1:] for s in shapes if s.group == "model"]
    for s, dtype_name in plan:
        base = {**asdict(s), "shape": "x".join(map(str, s.shape)), "dtype": dtype_name}
        if time.monotonic() > deadline:
            sink.write({**base, "impl": "all", "note": "skipped: part time budget"})
            continue
        dtype = getattr(torch, dtype_name)
        gen = torch.Generator(device=args.device).manual_seed(0)
        bsz, chans = s.shape[:2]

        def rnd(*shape, gen=gen, dtype=dtype):
            return torch.randn(*shape, device=args.device, dtype=dtype, generator=gen)

        x = rnd(*s.shape)
        kw = {
            "weight": rnd(chans),
            "bias": rnd(chans),
            "scale": 0.5 * rnd(bsz, chans),
            "shift": rnd(bsz, chans),
            "residual": rnd(*s.shape) if s.residual else None,
        }
        nbytes = x.numel() * x.element_size() * (3 if s.residual else 2)
        truth = group_norm_modulate_silu_reference(
            x.float(),
            s.groups,
            **{n: (t.float() if t is not None else None) for n, t in kw.items()},
        )
        out_copy = torch.empty_like(x)
        impls: list[tuple[str, Callable[[], torch.Tensor]]] = [
            (
                "triton",
                lambda x=x, kw=kw, s=s: ops.group_norm_modulate_silu(
                    x, s.groups, **kw, force_triton=not timer.cuda
                ),
            ),
            (
                "eager",
                lambda x=x, kw=kw, s=s: group_norm_modulate_silu_reference(x, s.groups, **kw),
            ),
            ("copy", lambda x=x, o=out_copy: o.copy_(x)),
        ]
        if compiled is not None and dtype_name == primary:
            if time.monotonic() < compile_deadline:
                impls.append(("compile", lambda x=x, kw=kw, s=s: compiled(x, s.groups, **kw)))
            else:
                sink.write({**base, "impl": "compile", "note": "skipped: compile time budget"})
        for impl, fn in impls:
            row = {**base, "impl": impl, "bytes": nbytes}
            if impl == "copy":
                row["bytes"] = 2 * x.numel() * x.element_size()
            try:
                out = fn()
                if impl != "copy":
                    row["max_err"] = (out.float() - truth).abs().max().item()
                row.update(timer.all(fn))
                row["gbps_cold"] = row["bytes"] / (row["ms_cold"] * 1e-3) / 1e9
            except Exception as exc:
                row["note"] = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
            if impl == "triton":
                row["plan"] = _gn_plan(x, s)
            sink.write(row)
        print(
            f"gn {s.name} {base['shape']} {dtype_name}: "
            f"triton {_read_last(args.out / 'gn.csv', 'triton')}",
            flush=True,
        )


def _gn_plan(x: torch.Tensor, s: GnShape) -> str:
    import triton
    from streamcodec.kernels.unet_step import kernel

    cg, sp = s.shape[1] // s.groups, math.prod(s.shape[2:])
    if triton.next_power_of_2(cg) * triton.next_power_of_2(sp) <= kernel.ONE_PASS_MAX:
        return f"one-pass {s.shape[0] * s.groups} programs"
    block = min(4096, triton.next_power_of_2(cg * sp))
    nsplit, _ = kernel.plan_splits(
        s.shape[0] * s.groups, cg * sp, block, kernel._sm_count(x.device)
    )
    return f"split {nsplit}/group"


# --- summary ---


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _num(v: str | None) -> float:
    try:
        return float(v) if v not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _ratio(a: float, b: float) -> str:
    return f"{b / a:.2f}x" if a > 0 and b > 0 and math.isfinite(a * b) else "-"


def _ms(v: float) -> str:
    return f"{v * 1e3:.1f}" if math.isfinite(v) else "-"


def _bytes_per_elem(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def _attention_tables(rows: list[dict[str, str]], lines: list[str]) -> list[str]:
    """Markdown tables, one row per (shape, dtype); returns the bar verdict lines."""
    keys: dict[tuple, dict[str, dict[str, str]]] = {}
    for r in rows:
        key = (
            r["group"],
            r["name"],
            r["dtype"],
            r["mask"],
            r["n_q"],
            r["n_k"],
            r["batch"],
            r["heads"],
            r["head_d"],
            r["chunk"],
            r["lookahead"],
        )
        keys.setdefault(key, {})[r["impl"]] = r
    verdicts, wins, total, losers = [], 0, 0, []
    for group in ("model", "sweep"):
        lines += [
            f"\n### Attention, {group} shapes (times in µs, median)\n",
            "| shape | mask | dtype | triton cold | graph | loop | SDPA cold (backend) | "
            "best forced SDPA | eager | compile | triton vs SDPA cold / graph / loop | "
            "triton TFLOP/s | max err (triton / SDPA) | config |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, impls in keys.items():
            if key[0] != group:
                continue
            _, name, dtype, mask, n_q, n_k, b, h, d, chunk, look = key
            tri, sd = impls.get("triton", {}), impls.get("sdpa", {})
            if not tri or "ms_cold" not in tri:
                note = next((i.get("note", "") for i in impls.values()), "")
                lines.append(f"| {name} | {mask} | {dtype} | {note} |" + " |" * 10)
                continue
            t = [_num(tri.get(c)) for c in ("ms_cold", "ms_graph", "ms_loop")]
            s = [_num(sd.get(c)) for c in ("ms_cold", "ms_graph", "ms_loop")]
            forced = [
                (n[5:], _num(r.get("ms_cold"))) for n, r in impls.items() if n.startswith("sdpa-")
            ]
            forced = [f for f in forced if math.isfinite(f[1])]
            best = min(forced, key=lambda f: f[1]) if forced else None
            mtxt = mask + (f" C{chunk} L{look}" if mask == "block_causal" else "")
            shape = f"{name} B{b} H{h} Nq{n_q} Nk{n_k} D{d}"
            lines.append(
                f"| {shape} | {mtxt} | {dtype} | {_ms(t[0])} | {_ms(t[1])} | {_ms(t[2])} | "
                f"{_ms(s[0])} ({sd.get('backend', '?')}) | "
                f"{f'{_ms(best[1])} ({best[0]})' if best else '-'} | "
                f"{_ms(_num(impls.get('eager', {}).get('ms_cold')))} | "
                f"{_ms(_num(impls.get('compile', {}).get('ms_cold')))} | "
                f"{_ratio(t[0], s[0])} / {_ratio(t[1], s[1])} / {_ratio(t[2], s[2])} | "
                f"{_num(tri.get('tflops_cold')):.1f} | "
                f"{_num(tri.get('max_err')):.2g} / {_num(sd.get('max_err')):.2g} | "
                f"{tri.get('config', '')} |"
            )
            if group == "model" and dtype in ("float16", "bfloat16") and math.isfinite(t[0] * s[0]):
                total += 1
                if t[0] <= s[0]:
                    wins += 1
                else:
                    losers.append(f"{shape} {mtxt} {dtype} ({_ratio(t[0], s[0])})")
    verdicts.append(
        f"- Attention >= 1.0x SDPA (cold, fp16/bf16) at model shapes: {wins} of {total}."
        + (f" Slower at: {'; '.join(losers)}." if losers else "")
    )
    return verdicts


def _gn_tables(rows: list[dict[str, str]], peak_gbps: float, lines: list[str]) -> list[str]:
    keys: dict[tuple, dict[str, dict[str, str]]] = {}
    for r in rows:
        keys.setdefault((r["group"], r["name"], r["shape"], r["dtype"]), {})[r["impl"]] = r
    n_fast, n_bw, total, misses = 0, 0, 0, []
    for group in ("model", "sweep"):
        lines += [
            f"\n### Fused GroupNorm+modulate+SiLU, {group} shapes (times in µs, median)\n",
            "| shape | dtype | plan | triton cold | graph | loop | GB/s | % copy peak | "
            "% same-size copy | eager | compile | triton vs compile cold / graph / loop | "
            "vs eager cold | max err |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, impls in keys.items():
            if key[0] != group:
                continue
            _, name, shape, dtype = key
            tri, comp = impls.get("triton", {}), impls.get("compile", {})
            if not tri or "ms_cold" not in tri:
                note = next((i.get("note", "") for i in impls.values()), "")
                lines.append(f"| {name} {shape} | {dtype} | {note} |" + " |" * 11)
                continue
            t = [_num(tri.get(c)) for c in ("ms_cold", "ms_graph", "ms_loop")]
            c = [_num(comp.get(k)) for k in ("ms_cold", "ms_graph", "ms_loop")]
            copy_ms = _num(impls.get("copy", {}).get("ms_cold"))
            eager_ms = _num(impls.get("eager", {}).get("ms_cold"))
            gbps = _num(tri.get("gbps_cold"))
            frac_peak = gbps / peak_gbps if peak_gbps > 0 else math.nan
            lines.append(
                f"| {name} {shape} | {dtype} | {tri.get('plan', '')} | {_ms(t[0])} | {_ms(t[1])} | "
                f"{_ms(t[2])} | {gbps:.0f} | {100 * frac_peak:.0f}% | "
                f"{100 * copy_ms / t[0]:.0f}% | {_ms(eager_ms)} | {_ms(c[0])} | "
                f"{_ratio(t[0], c[0])} / {_ratio(t[1], c[1])} / {_ratio(t[2], c[2])} | "
                f"{_ratio(t[0], eager_ms)} | {_num(tri.get('max_err')):.2g} |"
            )
            if group == "model" and math.isfinite(t[0] * c[0]):
                total += 1
                n_fast += c[0] / t[0] >= 1.2
                n_bw += frac_peak >= 0.6
                if c[0] / t[0] < 1.2 or frac_peak < 0.6:
                    misses.append(f"{shape} {dtype} ({_ratio(t[0], c[0])}, {100 * frac_peak:.0f}%)")
    return [
        f"- Fused UNet step >= 1.2x torch.compile (cold) at decoder shapes: {n_fast} of {total}; "
        f">= 60% of copy bandwidth: {n_bw} of {total}."
        + (f" Misses: {'; '.join(misses)}." if misses else "")
    ]


def write_summary(out: Path) -> str:
    """kernels.md from env.json, copy.csv, attention.csv, gn.csv and pytest.txt in ``out``."""
    env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
    copy_rows = _rows(out / "copy.csv")
    peak = max((_num(r.get("gbps")) for r in copy_rows), default=math.nan)
    lines = [
        "# Kernel benchmark",
        "",
        f"GPU: {env.get('gpu', '?')} ({env.get('sm_count', '?')} SMs, "
        f"driver/max SM clock {env.get('driver_and_max_sm_clock', '?')}); "
        f"torch {env.get('torch')}, "
        f"triton {env.get('triton')}, CUDA {env.get('cuda_runtime')}, Python {env.get('python')}; "
        f"{env.get('date_utc', '')} UTC.",
        "",
        "cold = CUDA events around each call, L2 flushed and the GPU busy-waiting until the "
        "call is queued (device time, no host launch latency); graph = CUDA-graph "
        "replay (warm L2, no launch overhead); loop = back-to-back eager calls (host launch "
        "overhead included). Speed-ups are other / triton. SDPA gets the best mask it "
        "accepts (none / is_causal / a precomputed boolean block-causal mask, built outside "
        "the timing); the Triton kernel needs no mask tensor. Eager and compile attention "
        "rows are skipped at N >= 4096.",
        "",
        "Copy bandwidth (read + write): "
        + ", ".join(f"{r['mib']} MiB {_num(r['gbps']):.0f} GB/s" for r in copy_rows)
        + f"; peak {peak:.0f} GB/s.",
    ]
    launch = {r["impl"]: r for r in _rows(out / "launch.csv")}
    if launch:
        lines += [
            "",
            "Launch floor (µs, cold / graph / loop): "
            + "; ".join(
                f"{impl} {_ms(_num(r.get('ms_cold')))} / {_ms(_num(r.get('ms_graph')))} / "
                f"{_ms(_num(r.get('ms_loop')))}"
                for impl, r in launch.items()
            )
            + ". In loop mode an op cannot be faster than its launch floor.",
        ]
    verdicts = _attention_tables(_rows(out / "attention.csv"), lines)
    verdicts += _gn_tables(_rows(out / "gn.csv"), peak, lines)
    lines += ["", "## Bars (issue 3)", "", *verdicts]
    if (out / "pytest.txt").exists():
        tail = (out / "pytest.txt").read_text().strip().splitlines()[-15:]
        lines += ["", "## GPU tests (tail of pytest.txt)", "", "```", *tail, "```"]
    text = "\n".join(lines) + "\n"
    (out / "kernels.md").write_text(text)
    return text


# --- main ---


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["env", "copy", "launch", "attention", "gn", "summary"])
    p.add_argument("--out", type=Path, required=True, help="results directory")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes (CPU plumbing test)")
    p.add_argument("--budget-s", type=float, default=100.0, help="stop measuring after this")
    p.add_argument(
        "--compile-budget-s",
        type=float,
        default=60.0,
        help="stop adding torch.compile rows after this",
    )
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument(
        "--dtypes",
        default="bfloat16,float16",
        help="attention model-shape dtypes; the first also runs the sweep, per-backend SDPA "
        "and compile",
    )
    p.add_argument(
        "--gn-dtypes",
        default="bfloat16,float16",
        help="GN dtypes; the first also runs the sweep and compile",
    )
    args = p.parse_args(argv)
    args.dtypes = args.dtypes.split(",")
    args.gn_dtypes = args.gn_dtypes.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    if (
        args.device == "cpu"
        and os.environ.get("TRITON_INTERPRET") != "1"
        and args.part in ("attention", "gn", "launch")
    ):
        print("CPU runs need TRITON_INTERPRET=1 (set before triton is imported)", file=sys.stderr)
        return 2
    if args.part == "summary":
        text = write_summary(args.out)
        print(text)
        return 0
    parts = {"env": part_env, "copy": part_copy, "launch": part_launch}
    parts.update(attention=part_attention, gn=part_gn)
    parts[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
