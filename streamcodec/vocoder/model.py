"""Vocos-style generator: causal ConvNeXt backbone over log-mel frames + iSTFT head.

Every convolution is causal (left context only), so the network's output frame
``g`` depends on mel frames ``<= g`` and nothing later. Look-ahead is obtained by
*training* output frame ``g`` to synthesise the analysis window of mel frame
``g - lookahead_frames`` (see :attr:`VocoderConfig.delay_samples`); the iSTFT
overlap-add adds ``n_fft / hop - 1`` frames of delay on top. One ``forward``
serves offline and streaming use: it takes and returns an explicit
:class:`GeneratorState` (the per-layer left context), which a stream session
owns, so one loaded model serves any number of concurrent streams.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn
from torch.nn import functional as F

from streamcodec.features import MelConfig
from streamcodec.packed_linear import WeightPacker

FORMAT_VERSION = 1

# chunks of at most this many frames take the unfold / GEMM paths of the convolutions
# (several times cheaper than the CPU conv call for a streaming push of a few frames)
SHORT_CHUNK_FRAMES = 16


@dataclass(frozen=True)
class VocoderConfig:
    """Hyper-parameters of the generator (serialised to ``config.json`` beside the weights)."""

    mel: MelConfig = field(default_factory=MelConfig)
    dim: int = 256  # backbone width D
    intermediate_dim: int = 768  # ConvNeXt MLP width
    num_layers: int = 6
    kernel_size: int = 7  # depthwise conv kernel (frames)
    embed_kernel_size: int = 7
    lookahead_frames: int = 0  # extra network delay in mel frames (on top of the iSTFT's)
    layer_scale_init: float = 0.0  # 0 -> 1 / num_layers
    max_log_magnitude: float = math.log(100.0)  # clamp of the predicted log-magnitude
    # False: the head predicts each frame's phase. True: it also predicts a per-bin phase
    # step, accumulated over frames (see VocoderGenerator), so a steady tone keeps its pitch
    integrate_phase: bool = False
    # ... and its step outputs are multiplied by this (part of the weights' meaning: saved;
    # x8 trained slower than x1 from scratch, benchmarks/results/vocoder/pitch)
    phase_step_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("dim", "intermediate_dim", "num_layers", "kernel_size", "embed_kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"VocoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.phase_step_scale > 0:
            raise ValueError(f"phase_step_scale must be > 0, got {self.phase_step_scale}")
        if self.lookahead_frames < 0:
            raise ValueError(f"lookahead_frames must be >= 0, got {self.lookahead_frames}")
        if self.mel.n_fft % self.mel.hop_length:
            raise ValueError(
                f"n_fft ({self.mel.n_fft}) must be a multiple of hop ({self.mel.hop_length})"
            )

    @property
    def hop_samples(self) -> int:
        return self.mel.hop_length

    @property
    def n_fft(self) -> int:
        return self.mel.n_fft

    @property
    def overlap_frames(self) -> int:
        """Synthesis frames overlapping one output block, minus one (``n_fft / hop - 1``)."""
        return self.n_fft // self.hop_samples - 1

    @property
    def delay_frames(self) -> int:
        return self.overlap_frames + self.lookahead_frames

    @property
    def delay_samples(self) -> int:
        """Output sample ``n + delay_samples`` of the stream reproduces input sample ``n``."""
        return self.delay_frames * self.hop_samples

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: the delay plus one hop of framing (first sample of a block)."""
        return 1000.0 * (self.delay_samples + self.hop_samples) / self.mel.sample_rate

    @property
    def silence_log_mel(self) -> float:
        """Log-mel value of digital silence (used to pad the end of a stream)."""
        return math.log(self.mel.log_floor)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VocoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VocoderConfig keys {sorted(unknown)}")
        d = dict(d)
        if "mel" in d:
            d["mel"] = MelConfig(**d["mel"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass
class GeneratorState:
    """Left context of every causal conv of one batch of streams.

    ``context[0]: [B, M, k - 1]`` (normalised mel into the embedding conv) and
    ``context[i]: [B, k - 1, D]`` (block ``i``'s depthwise conv input); with
    ``integrate_phase`` a last entry ``[B, K]`` float64: the accumulated phase after the
    last frame (wrapped to ``[0, 2 pi)``).
    """

    context: list[torch.Tensor]


def _causal_context(
    x: torch.Tensor, context: torch.Tensor | None, k: int, dim: int
) -> torch.Tensor:
    """``x`` with ``k - 1`` frames of left context (zeros at the start) along ``dim``."""
    if context is None:
        shape = list(x.shape)
        shape[dim] = k - 1
        context = x.new_zeros(shape)
    return torch.cat([context, x], dim=dim)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv -> LayerNorm -> MLP (GELU) -> layer scale, residual.

    ``x: [B, F, D]`` (frames first, so the MLP and LayerNorm need no transposes);
    ``context: [B, k - 1, D]`` is the left context of the depthwise conv.
    """

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, scale: float):
        super().__init__()
        self.kernel_size = kernel_size
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate_dim)
        self.pw2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), scale))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.kernel_size
        xin = _causal_context(x, context, k, dim=1)
        new_context = xin[:, xin.shape[1] - (k - 1) :]
        if x.shape[1] <= SHORT_CHUNK_FRAMES:
            # short streaming chunks: multiply-add over an unfolded view is several times
            # cheaper on CPU than the conv call (same result to ~1e-6)
            h = (xin.unfold(1, k, 1) * self.dwconv.weight[:, 0]).sum(-1) + self.dwconv.bias
        else:
            h = self.dwconv(xin.transpose(1, 2)).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return torch.addcmul(x, h, self.gamma), new_context


class VocoderGenerator(nn.Module):
    """Log-mel ``[B, M, F]`` -> complex spectra of synthesis frames ``[B, n_fft//2+1, F]``.

    Phase: a frame's phase is relative to the frame's first sample, and the network is
    the same function at every frame, so from the same input (a steady tone) it gives the
    same phase every frame: output periodic in the hop, harmonics pulled onto multiples of
    ``sample_rate / hop`` (measured: a 230 Hz tone comes out at 200, 450, 500, 700 Hz).
    ``integrate_phase`` removes that: the head also predicts a step ``delta`` per bin and
    frame, and the phase is ``psi_g + A_g`` with ``A_g = A_{g-1} + 2 pi m hop / n_fft +
    delta_g`` (bin ``m``'s centre frequency plus the network's deviation), ``A`` carried in
    the stream state. A tone at a bin centre then needs ``delta = 0``, and any steady tone
    a constant ``delta``.

    Use :func:`streamcodec.vocoder.istft.overlap_add` (offline) or a
    :class:`streamcodec.vocoder.streaming.VocoderStream` to turn them into audio.
    """

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.embed = nn.Conv1d(cfg.mel.n_mels, d, cfg.embed_kernel_size)
        self.embed_norm = nn.LayerNorm(d, eps=1e-6)
        scale = cfg.layer_scale_init or 1.0 / cfg.num_layers
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(d, cfg.intermediate_dim, cfg.kernel_size, scale)
            for _ in range(cfg.num_layers)
        )
        self.final_norm = nn.LayerNorm(d, eps=1e-6)
        self.n_bins = cfg.n_fft // 2 + 1
        self.head = nn.Linear(d, (3 if cfg.integrate_phase else 2) * self.n_bins)
        # phase advance of each bin's centre frequency over one hop, wrapped (float64)
        m = torch.arange(self.n_bins, dtype=torch.float64)
        self.register_buffer(
            "bin_step",
            torch.remainder(2 * math.pi * m * cfg.hop_samples / cfg.n_fft, 2 * math.pi),
            persistent=False,
        )
        # log-mel is ~[-11.5, 3]: centre it so the first conv starts in a sane range
        self.register_buffer("mel_offset", torch.tensor(5.0), persistent=False)
        self.register_buffer("mel_scale", torch.tensor(0.25), persistent=False)
        # set by Vocoder (CPU inference): fp16 GEMM of the embedding conv on short chunks
        self.embed_packer: WeightPacker | None = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, mel: torch.Tensor, state: GeneratorState | None = None
    ) -> tuple[torch.Tensor, GeneratorState]:
        """``mel: [B, M, F]`` natural-log mel -> (``spec: [B, n_fft//2+1, F] complex64``, state).

        With ``state=None`` the left context is zeros (start of a stream / offline).
        """
        if mel.dim() != 3 or mel.shape[1] != self.cfg.mel.n_mels:
            raise ValueError(
                f"expected mel: [B, {self.cfg.mel.n_mels}, F], got shape {tuple(mel.shape)}"
            )
        n_ctx = 1 + len(self.blocks)
        ctx_in = state.context if state is not None else [None] * (n_ctx + 1)
        k = self.cfg.embed_kernel_size
        xin = _causal_context((mel + self.mel_offset) * self.mel_scale, ctx_in[0], k, dim=2)
        ctx_out = [xin[..., xin.shape[2] - (k - 1) :]]
        if mel.shape[2] <= SHORT_CHUNK_FRAMES:  # one GEMM beats the CPU conv's slow path
            cols = xin.unfold(2, k, 1).transpose(1, 2).flatten(2)  # [B, F, M * k]
            w = self.embed.weight.flatten(1)  # [D, M * k], same (M, k) order
            if self.embed_packer is not None:
                x = self.embed_packer.linear(cols, w, self.embed.bias, owner=self.embed.weight)
            else:
                x = F.linear(cols, w, self.embed.bias)
        else:
            x = self.embed(xin).transpose(1, 2)  # [B, F, D]
        x = self.embed_norm(x)
        for block, c_in in zip(self.blocks, ctx_in[1:n_ctx], strict=True):
            x, c = block(x, c_in)
            ctx_out.append(c)
        x = self.head(self.final_norm(x)).float()  # [B, F, 2K or 3K]
        if self.cfg.integrate_phase:
            log_mag, psi, delta = x.chunk(3, dim=-1)
            delta = delta * self.cfg.phase_step_scale
            phase, acc = self._integrate(psi, delta, ctx_in[n_ctx])
            ctx_out.append(acc)
        else:
            log_mag, phase = x.chunk(2, dim=-1)
        mag = torch.exp(log_mag.clamp(max=self.cfg.max_log_magnitude))
        spec = torch.polar(mag, phase).transpose(1, 2)
        return spec, GeneratorState(ctx_out)

    def _integrate(
        self, psi: torch.Tensor, delta: torch.Tensor, acc0: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Phase ``psi + A`` of frames ``[B, F, K]`` and the wrapped ``A`` after the last one
        (float64: offline runs of any length and streamed chunks give the same phase)."""
        steps = delta.double() + self.bin_step
        if acc0 is None:
            acc0 = steps.new_zeros(steps.shape[0], steps.shape[2])
        acc = acc0.unsqueeze(1) + torch.cumsum(steps, dim=1)  # [B, F, K]
        w = self.cfg.n_fft // self.cfg.hop_samples  # the frames one output sample overlaps
        if self.training and acc.requires_grad and acc.shape[1] > w:
            # same values; the gradient of frame g's phase reaches only the steps of frames
            # g - w + 1 .. g (a sum over the whole crop makes it huge and noisy)
            recent = acc - F.pad(acc[:, :-w], (0, 0, w, 0))  # sum of the last w steps
            acc = (acc - recent).detach() + recent
        two_pi = 2 * math.pi
        phase = torch.remainder(psi.double() + acc, two_pi).float()
        last = acc[:, -1] if acc.shape[1] else acc0
        return phase, torch.remainder(last, two_pi)
