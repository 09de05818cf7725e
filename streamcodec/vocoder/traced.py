"""The generator as a frozen TorchScript trace, for streaming pushes on a CPU.

A streaming push of a few mel frames runs ~90 small tensor ops; at 4 frames (40 ms)
their Python and ``nn.Module`` call overhead costs about as much as the arithmetic.
``torch.jit.trace`` + ``torch.jit.freeze`` runs the same ATen ops (the fbgemm fp16
GEMMs of :mod:`streamcodec.packed_linear` included) from TorchScript's interpreter,
so the outputs are the same numbers, and measured on the 2-core VM it halves the
generator's time per 4-frame push (``benchmarks/results/vocoder_speed.md``).

Two traces are kept, one per branch of the model's short-chunk switch
(:data:`~streamcodec.vocoder.model.SHORT_CHUNK_FRAMES`), both for any batch size and
chunk length. A trace is checked against the module before use, and anything that
fails (a torch build without TorchScript, a mismatch) leaves the module in charge.
``STREAMCODEC_TRACE_VOCODER=0`` turns tracing off.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings

import torch
from torch import nn

from streamcodec.packed_linear import weight_key
from streamcodec.vocoder.model import SHORT_CHUNK_FRAMES, GeneratorState, VocoderGenerator

log = logging.getLogger(__name__)

TRACE_ENV = "STREAMCODEC_TRACE_VOCODER"


def enabled() -> bool:
    """Tracing is not turned off by ``STREAMCODEC_TRACE_VOCODER=0``."""
    return os.environ.get(TRACE_ENV, "1").strip().lower() not in ("0", "false", "no")


class _FlatStep(nn.Module):
    """``(mel, *contexts) -> (spec, *contexts)``: the generator with tensors in and out only."""

    def __init__(self, generator: VocoderGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, mel: torch.Tensor, *context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        spec, state = self.generator(mel, GeneratorState(list(context)))
        return (spec, *state.context)


def zero_state(generator: VocoderGenerator, batch: int) -> GeneratorState:
    """The state of a stream that has not started: zero left context everywhere."""
    cfg = generator.cfg
    p = next(generator.parameters())
    ctx = [p.new_zeros(batch, cfg.mel.n_mels, cfg.embed_kernel_size - 1)]
    ctx += [p.new_zeros(batch, cfg.kernel_size - 1, cfg.dim) for _ in generator.blocks]
    if cfg.integrate_phase:
        ctx.append(p.new_zeros(batch, generator.n_bins, dtype=torch.float64))
    return GeneratorState(ctx)


def weights_key(generator: VocoderGenerator) -> tuple:
    """Changes when any weight does (the trace holds them, and their fp16 packs, as constants)."""
    return tuple(weight_key(p) for p in generator.parameters())


class TracedGenerator:
    """Callable like the generator with an explicit state: ``(mel, state) -> (spec, state)``."""

    def __init__(self, generator: VocoderGenerator) -> None:
        self._short, self._long = (
            _trace(generator, n) for n in (min(4, SHORT_CHUNK_FRAMES), 2 * SHORT_CHUNK_FRAMES)
        )
        self._generator = generator

    def __call__(
        self, mel: torch.Tensor, state: GeneratorState | None
    ) -> tuple[torch.Tensor, GeneratorState]:
        if state is None:
            state = zero_state(self._generator, mel.shape[0])
        fn = self._short if mel.shape[2] <= SHORT_CHUNK_FRAMES else self._long
        spec, *context = fn(mel, *state.context)
        return spec, GeneratorState(context)


def _trace(generator: VocoderGenerator, frames: int) -> torch.jit.ScriptModule:
    """Frozen trace of one push of ``frames`` frames, checked against the module."""
    cfg = generator.cfg
    gen = torch.Generator().manual_seed(frames)
    p = next(generator.parameters())

    def example(batch: int, n: int) -> tuple[torch.Tensor, ...]:
        mel = torch.randn(batch, cfg.mel.n_mels, n, generator=gen).to(p) - 4.0
        ctx = zero_state(generator, batch).context
        ctx = [torch.randn(c.shape, generator=gen).to(c) for c in ctx]
        return (mel, *ctx)

    flat = _FlatStep(generator).eval()  # generator.training is False already
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-derived ints
        flat(*example(1, frames))  # fp16 packs of the weights made now, not inside the trace
        traced = torch.jit.freeze(torch.jit.trace(flat, example(1, frames), check_trace=False))
        # the trace must agree with the module for other batch sizes and lengths too
        lengths = (
            (1, frames, SHORT_CHUNK_FRAMES)
            if frames <= SHORT_CHUNK_FRAMES
            else (SHORT_CHUNK_FRAMES + 1, frames + 3)
        )
        for batch, n in ((1, lengths[0]), (2, lengths[1]), (1, lengths[-1])):
            args = example(batch, n)
            want, got = flat(*args), traced(*args)
            for w, g in zip(want, got, strict=True):
                if w.shape != g.shape or not torch.allclose(w, g, rtol=1e-5, atol=1e-5):
                    raise RuntimeError(f"trace differs from the module (batch {batch}, {n} frames)")
    return traced


class TraceCache:
    """One vocoder's trace, built on first use and again after its weights change.

    :meth:`get` returns ``None`` where tracing does not apply (turned off, CUDA, not
    float32, a generator in training mode) or failed for these weights (logged once).
    """

    def __init__(self, generator: VocoderGenerator) -> None:
        self.generator = generator
        self._key: tuple | None = None
        self._traced: TracedGenerator | None = None
        self._lock = threading.Lock()

    def get(self) -> TracedGenerator | None:
        g = self.generator
        p = next(g.parameters())
        if not enabled() or g.training or p.device.type != "cpu" or p.dtype != torch.float32:
            return None
        key = weights_key(g)
        with self._lock:
            if key != self._key:
                self._key, self._traced = key, None
                try:
                    self._traced = TracedGenerator(g)
                except Exception as exc:  # noqa: BLE001 - any failure: the module streams
                    log.warning("vocoder trace unavailable, streaming through the module: %s", exc)
            return self._traced
