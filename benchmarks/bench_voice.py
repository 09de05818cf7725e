"""CPU speed of the voice codecs (one stream, streaming encode + decode), and concealment.

Speed (default): for each configuration, the streaming encoder session (pushes of one
token frame) and the streaming decoder session (one frame per push) at 1, 2, 4 and 8
decoder steps, with and without classifier-free guidance (the guided pair is one
batched call), plus the parts alone (semantic tokenizer stream, vocoder stream).
RTF = processing seconds / audio seconds (median of ``--repeats``, taken in turns over
all the measured parts so a slow spell of a shared machine does not land on one);
``cpu_rtf`` counts process CPU time (on a shared machine the wall time includes
waiting for a core). Speed does not
depend on training, so ``--random-init`` measures the shipped architecture before
weights exist (random decoder, random 8192-entry codebook, the real semantic
encoder and vocoder). Writes ``benchmarks/results/voice_speed.{json,md}``.

Concealment (``--concealment``, trained weights): drops token frames (Bernoulli
``--loss``) from dev files and scores decoding through the gap against
repeat-and-fade (mel distance and STOI against the clean reference). Writes
``benchmarks/results/voice_concealment.{json,md}``.

    python benchmarks/bench_voice.py --random-init --seconds 8
    python benchmarks/bench_voice.py --configs voice-700 --weights DIR
    python benchmarks/bench_voice.py --concealment --configs voice-700 --files 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from streamcodec import packed_linear
from streamcodec.audio import load_audio
from streamcodec.manifest import read_manifest
from streamcodec.semantic.codebook import Codebook
from streamcodec.semantic.config import RATES
from streamcodec.semantic.tokenizer import WEIGHTS_DIR, SemanticTokenizer, load_encoder
from streamcodec.vocoder.inference import Vocoder
from streamcodec.vocoder.streaming import intra_op_threads
from streamcodec.voice.codec import VoiceCodec
from streamcodec.voice.config import preset
from streamcodec.voice.model import VoiceModel, bundled_voice_dir

RESULTS = Path(__file__).resolve().parent / "results"  # --results overrides
REPO = Path(__file__).resolve().parents[1]
DEV_SPEECH = REPO.parent / "shared" / "data" / "dev" / "speech"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_fp16_linear": packed_linear.enabled(),
    }


def test_signal(seconds: float) -> np.ndarray:
    """The first dev speech files concatenated (or a synthetic signal without the corpus)."""
    n = int(seconds * 16000)
    if (DEV_SPEECH / "manifest.tsv").exists():
        parts, have = [], 0
        for e in read_manifest(DEV_SPEECH):
            parts.append(load_audio(e.path))
            have += parts[-1].size
            if have >= n:
                break
        return np.concatenate(parts)[:n].astype(np.float32)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 200 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)


def random_init_codec(name: str, semantic: Path, seed: int = 0, threads: int = 1) -> VoiceCodec:
    cfg = preset(name)
    torch.manual_seed(seed)
    model = VoiceModel(cfg).eval()
    enc = load_encoder(semantic)
    g = torch.Generator().manual_seed(seed)
    cb = Codebook(torch.randn(cfg.sem_vocab, enc.cfg.d_model, generator=g))
    with torch.no_grad():
        model.decoder.cond.sem_table.copy_(cb.centroids)
    tok = SemanticTokenizer(enc, RATES[cfg.tokenizer], cb, cfg.tokenizer)
    return VoiceCodec.from_parts(
        model, tok, Vocoder.from_pretrained(cfg.vocoder_weights), threads=threads
    )


def load_codec(name: str, args: argparse.Namespace) -> tuple[VoiceCodec, bool]:
    wdir = args.weights if args.weights else bundled_voice_dir(name)
    if not args.random_init and (Path(wdir) / "config.json").exists():
        return VoiceCodec(name, weights=wdir, threads=args.threads), True
    if not args.random_init:
        raise FileNotFoundError(f"no weights for {name} at {wdir}; use --random-init for speed")
    sem = args.semantic_weights
    if sem is None:
        sem = (
            WEIGHTS_DIR
            if (WEIGHTS_DIR / "encoder.safetensors").exists()
            else REPO / "runs/gpu1/mae"
        )
    return random_init_codec(name, Path(sem), threads=args.threads), False


def timed_round_robin(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each ``fns[name]()``, the repeats taken in turns
    (fn1, fn2, ..., fn1, fn2, ...) so that a slow spell of this shared machine spreads over
    all of them instead of landing on one; one warm-up call each first."""
    for fn in fns.values():
        fn()
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
    return {k: (statistics.median(walls[k]), statistics.median(cpus[k])) for k in fns}


def bench_speed(
    codec: VoiceCodec,
    x: np.ndarray,
    steps_list: list[int],
    guidances: list[float],
    repeats: int,
    threads: int = 1,
) -> dict:
    audio_s = x.size / 16000
    fs = codec.frame_samples

    def encode() -> None:
        s = codec.encoder()
        for i in range(0, x.size, fs):
            s.push(x[i : i + fs])
        s.flush()

    fns = {"encoder": encode}

    def tokenizer_only() -> None:
        with intra_op_threads(threads), torch.inference_mode():
            s = codec.tokenizer.stream()
            for i in range(0, x.size, fs):
                s.push(torch.from_numpy(x[i : i + fs]))
            s.flush()

    fns["semantic_tokenizer"] = tokenizer_only
    frames = codec.encode(x)
    mel = codec.vocoder.mel(torch.from_numpy(x)[None])
    chunk = codec.cfg.decoder.chunk_mel_frames

    def vocoder_only() -> None:
        s = codec.vocoder.stream(threads=threads)
        for i in range(0, mel.shape[2], chunk):
            s.push(mel[..., i : i + chunk])
        s.flush()

    fns["vocoder"] = vocoder_only
    base = codec.sampler
    samplers = {}
    for g in guidances:
        for steps in steps_list:
            sampler = type(base)(
                steps=steps, guidance=g, seed=base.seed, noise_scale=base.noise_scale
            )
            samplers[f"decoder {steps} {g}"] = sampler

            def decode(sampler=sampler) -> None:
                codec.sampler = sampler
                s = codec.decoder()
                for f in frames:
                    s.push(f)
                s.flush()

            fns[f"decoder {steps} {g}"] = decode
    times = timed_round_robin(fns, repeats)
    out = {
        k: {"rtf": times[k][0] / audio_s, "cpu_rtf": times[k][1] / audio_s}
        for k in ("encoder", "semantic_tokenizer", "vocoder")
    }
    out["vocoder"]["push_ms"] = 10 * chunk
    rows = [
        {"steps": sm.steps, "guidance": sm.guidance, "rtf": times[k][0] / audio_s,
         "cpu_rtf": times[k][1] / audio_s}
        for k, sm in samplers.items()
    ]  # fmt: skip
    codec.sampler = base
    out["decoder"] = rows
    return out


def run_speed(args: argparse.Namespace) -> None:
    x = test_signal(args.seconds)
    results = {"machine": machine(), "seconds": x.size / 16000, "threads": args.threads,
               "configs": {}}  # fmt: skip
    for name in args.configs:
        codec, trained = load_codec(name, args)
        r = bench_speed(codec, x, args.steps, args.guidance, args.repeats, args.threads)
        r.update(
            trained=trained,
            latency_ms=codec.latency_ms(),
            decode_chunk_ms=codec.cfg.decoder.chunk_token_frames * codec.cfg.frame_ms,
            decoder_parameters=codec.model.decoder.num_parameters(),
            acoustic_parameters=sum(p.numel() for p in codec.model.acoustic.parameters()),
        )
        results["configs"][name] = r
        print(json.dumps({name: r}, indent=1))
    results["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / f"{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    (res / f"{args.tag}.md").write_text(speed_markdown(results))
    print(f"wrote {res / args.tag}.{{json,md}}")


def speed_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Voice codec CPU speed (one stream, streaming)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared; 1-min load average "
        f"{m['load_avg_1m']} at start, {m.get('load_avg_1m_end')} at end), torch {m['torch']}, "
        f"{r.get('threads', 1)} intra-op thread(s), "
        f"{'fp16' if m.get('cpu_fp16_linear') else 'fp32'} weights in the linear layers "
        f"(streamcodec/packed_linear.py). Audio: {r['seconds']:.1f} s of dev speech. "
        "RTF = wall "
        "seconds per audio second (median of repeats); CPU RTF = process CPU seconds per audio "
        "second (excludes waiting for a core on this loaded machine).",
        "",
    ]
    for name, c in r["configs"].items():
        lat = c["latency_ms"]
        enc = c["encoder"]
        lines += [
            f"## {name} ({'trained' if c['trained'] else 'random-init, same architecture'})",
            "",
            f"Decoder {c['decoder_parameters'] / 1e6:.2f} M parameters, acoustic encoder "
            f"{c['acoustic_parameters'] / 1e6:.2f} M; decode chunk {c['decode_chunk_ms']:g} ms; "
            f"algorithmic latency {lat['total_ms']:g} ms.",
            "",
            f"Parts: encoder session RTF {enc['rtf']:.3f} (CPU {enc['cpu_rtf']:.3f}), of which "
            f"semantic tokenizer {c['semantic_tokenizer']['rtf']:.3f} (CPU "
            f"{c['semantic_tokenizer']['cpu_rtf']:.3f}); vocoder alone "
            f"{c['vocoder']['rtf']:.3f} (CPU {c['vocoder']['cpu_rtf']:.3f}) at "
            f"{c['vocoder']['push_ms']:g} ms pushes.",
            "",
            "| steps | guidance | decoder RTF | decoder CPU RTF | encode + decode RTF | CPU RTF |",
            "|---|---|---|---|---|---|",
        ]
        for d in c["decoder"]:
            lines.append(
                f"| {d['steps']} | {d['guidance']:g} | {d['rtf']:.3f} | {d['cpu_rtf']:.3f} | "
                f"{enc['rtf'] + d['rtf']:.3f} | {enc['cpu_rtf'] + d['cpu_rtf']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def run_concealment(args: argparse.Namespace) -> None:
    from streamcodec.eval.align import align_to
    from streamcodec.eval.metrics import Scorers

    scorers = Scorers(("mel_distance", "stoi"), True, None)
    entries = read_manifest(DEV_SPEECH)[: args.files]
    rng = np.random.default_rng(args.seed)
    out = {"machine": machine(), "loss": args.loss, "files": len(entries), "configs": {}}
    for name in args.configs:
        codecs = {
            m: VoiceCodec(name, weights=args.weights, concealment=m)
            for m in ("generate", "repeat-fade")
        }
        sums: dict[str, list[dict]] = {"no-loss": [], "generate": [], "repeat-fade": []}
        for e in entries:
            ref = load_audio(e.path)
            frames = codecs["generate"].encode(ref)
            lost = rng.random(len(frames)) < args.loss
            lossy = [None if d else f for f, d in zip(frames, lost, strict=True)]
            for mode, fr in (("no-loss", frames), ("generate", lossy), ("repeat-fade", lossy)):
                c = codecs["generate" if mode == "no-loss" else mode]
                deg, _ = align_to(ref, c.decode(fr), c.delay_samples, 1600)
                sums[mode].append(scorers.intrusive(ref, deg))
        out["configs"][name] = {
            mode: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            for mode, rows in sums.items()
        }
        print(json.dumps({name: out["configs"][name]}, indent=1))
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / "voice_concealment.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Voice codec concealment: generating through lost frames vs repeat-and-fade",
        "",
        f"{out['files']} dev/speech files, token frames dropped independently with probability "
        f"{args.loss:g} (seed {args.seed}); intrusive metrics against the clean reference.",
        "",
        "| codec | mode | mel distance (lower is better) | STOI |",
        "|---|---|---|---|",
    ]
    for name, modes in out["configs"].items():
        for mode, v in modes.items():
            lines.append(f"| {name} | {mode} | {v['mel_distance']:.3f} | {v['stoi']:.3f} |")
    (res / "voice_concealment.md").write_text("\n".join(lines) + "\n")


def run_gpu_batched(args: argparse.Namespace) -> None:
    """Batched decode on a GPU: S streams decoded together chunk by chunk (decoder with its KV
    caches + vocoder), with and without the Triton kernels; real-time streams per GPU =
    S x chunk duration / wall time per chunk."""
    from streamcodec import ops
    from streamcodec.decoder.model import KVCache
    from streamcodec.decoder.sampling import SamplerConfig, sample_chunk, time_table

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--gpu-batched needs CUDA (or --device cpu for a plumbing check)")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (plumbing check)"
    out = {"machine": machine(), "gpu": gpu, "dtype": args.dtype,
           "configs": {}}  # fmt: skip
    for name in args.configs:
        wdir = args.weights if args.weights else bundled_voice_dir(name)
        if (Path(wdir) / "config.json").exists() and not args.random_init:
            model, _ = VoiceModel.load(wdir)
            trained = True
        else:
            model, trained = VoiceModel(preset(name)).eval(), False
        dec = model.decoder.to(dev, dtype)
        voc = Vocoder.from_pretrained(model.cfg.vocoder_weights, device=str(dev))  # fp32
        cfg = dec.cfg
        chunk_s = cfg.chunk_mel_frames * 0.01
        rows = []
        for triton in (True, False):
            os.environ["STREAMCODEC_DISABLE_TRITON"] = "0" if triton else "1"
            for g in args.guidance:
                for steps in args.steps:
                    sampler = SamplerConfig(steps=steps, guidance=g)
                    for s in args.streams:
                        try:
                            t = _gpu_chunk_time(dec, voc, sampler, s, args.chunks, dev, dtype,
                                                KVCache, sample_chunk, time_table)  # fmt: skip
                        except torch.cuda.OutOfMemoryError:
                            torch.cuda.empty_cache()
                            break
                        counts = ops.backend_counts()
                        row = {
                            "triton": triton, "guidance": g, "steps": steps, "streams": s,
                            "ms_per_chunk": 1000 * t, "realtime_streams": s * chunk_s / t,
                            "triton_calls": sum(
                                v for (_, b), v in counts.items() if b == "triton"
                            ),
                        }  # fmt: skip
                        rows.append(row)
                        print(json.dumps({name: row}))
        os.environ.pop("STREAMCODEC_DISABLE_TRITON", None)
        out["configs"][name] = {"trained": trained, "chunk_ms": 1000 * chunk_s, "rows": rows}
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / "voice_gpu.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# Voice codec batched decode on {out['gpu']} ({args.dtype})",
        "",
        "Decoder (KV-cached chunks, guided pair batched) + vocoder for S streams at once; "
        "real-time streams = S x chunk duration / wall time per chunk (median over chunks "
        "after warm-up). Semantic encoder (sender side) not included.",
        "",
        "| codec | Triton | guidance | steps | streams S | ms / chunk | real-time streams |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in out["configs"].items():
        for r in c["rows"]:
            lines.append(
                f"| {name} | {'yes' if r['triton'] else 'no'} | {r['guidance']:g} | "
                f"{r['steps']} | {r['streams']} | {r['ms_per_chunk']:.2f} | "
                f"{r['realtime_streams']:.0f} |"
            )
    (res / "voice_gpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {res}/voice_gpu.{{json,md}}")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@torch.inference_mode()
def _gpu_chunk_time(dec, voc, sampler, s, n_chunks, dev, dtype, KVCache, sample_chunk, time_table):
    """Median wall seconds per decode chunk for ``s`` streams."""
    from streamcodec import ops

    cfg = dec.cfg
    bc = sampler.branches
    cf = cfg.chunk_token_frames
    ids = torch.randint(0, cfg.sem_vocab, (bc * s, cf * n_chunks), device=dev)
    q = torch.rand(bc * s, cf * n_chunks, cfg.fsq_dim, device=dev, dtype=dtype) * 2 - 1
    keep = torch.ones(bc * s, cf * n_chunks, dtype=torch.bool, device=dev)
    keep[s:] = False  # the unconditional branch (rows s.. exist only with guidance)
    table = time_table(dec, sampler.steps)
    cache = KVCache.empty(cfg.n_layers)
    vs = voc.stream(batch_size=s, threads=None)
    state, context, times = None, None, []
    c = cfg.chunk_tokens
    for i in range(n_chunks):
        if i == 3:
            ops.reset_backend_counts()
        _sync(dev)
        t0 = time.perf_counter()
        cond, state = dec.cond(ids[:, i * cf : (i + 1) * cf], q[:, i * cf : (i + 1) * cf],
                               keep[:, i * cf : (i + 1) * cf], state)  # fmt: skip
        feat = dec.cond_features(cond)
        noise = torch.randn(s, c, cfg.patch_dim, device=dev, dtype=dtype)
        x = sample_chunk(dec, feat, cache, context, noise, sampler, table)
        context = (x, feat)
        mel = dec.denormalise(dec.from_patches(x))
        vs.push(mel.float())
        _sync(dev)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["voice-350", "voice-700", "voice-1400"])
    p.add_argument("--weights", type=Path, help="weights directory (one config)")
    p.add_argument("--random-init", action="store_true", help="untrained model, same sizes")
    p.add_argument("--semantic-weights", type=Path, help="semantic encoder dir for --random-init")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (speed runs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--tag", default="voice_speed", help="results file name")
    p.add_argument("--concealment", action="store_true")
    p.add_argument("--loss", type=float, default=0.1)
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu-batched", action="store_true", help="batched GPU decode benchmark")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    p.add_argument("--chunks", type=int, default=20, help="decode chunks per GPU measurement")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--results", default=str(RESULTS), help="directory for the result files")
    p.add_argument("--device", default="cuda", help="--gpu-batched device (cpu: plumbing check)")
    args = p.parse_args()
    if args.gpu_batched:
        run_gpu_batched(args)
    elif args.concealment:
        run_concealment(args)
    else:
        run_speed(args)


if __name__ == "__main__":
    main()
