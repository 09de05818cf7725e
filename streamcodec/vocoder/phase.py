"""Phase from magnitude: re-phase the vocoder's output (PGHI), offline and streaming.

Why: the vocoder's magnitudes are good and its phases are not. On the first 16 files of
dev/speech (``benchmarks/results/vocoder/phase/README.md``), the STFT magnitude of the
vocoder's output put back with the *reference's* phase scores DNSMOS OVRL 3.17 (the
vocoder's own output 2.73, the reference 3.40), the reference's magnitude with the
*vocoder's* phase 2.68. So this stage analyses the vocoder's output (Hann window), keeps
the magnitude, and integrates a new phase from it.

How: phase-gradient heap integration, PGHI (Průša, Balazs & Søndergaard, "A noniterative
method for reconstruction of phase from STFT magnitude", IEEE/ACM TASLP 25(5), 2017), with
the causal gradients of its real-time form (RTPGHI, ltfat note 043). For a Hann window of
length ``N`` (the Gaussian that fits it has ``gamma = 0.25645 N^2``), hop ``a`` and
``s = log |X|``:

- phase advance from frame to frame at bin ``m``: ``a N / gamma * ds/dm + 2 pi a m / N``
  (centred difference over frequency, within the frame: no look-ahead);
- phase step from bin to bin: ``-gamma / (a N) * ds/dt`` (backward difference over time:
  causal).

Per frame, bins are visited in decreasing magnitude from a max-heap that starts with the
previous frame's bins: a bin reached from the previous frame takes its phase by time
integration, one reached from a neighbour by frequency integration; bins more than
``tol`` below the frame's largest magnitude get phase 0. The heap runs per frame and bin,
compiled with numba (:mod:`streamcodec.vocoder._pghi_heap`). An earlier vectorised
approximation (phase locked to the nearest spectral peak) lost the heap's gain and was
replaced (same README).

The stage delays the signal by ``n_fft - hop`` samples (the analysis window minus one hop):
``PhaseStream`` output sample ``n + delay_samples`` corresponds to input sample ``n``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from streamcodec.vocoder.istft import overlap_add_stream, window_envelope

#: gamma / N^2 of the Gaussian window that matches a Hann window of length N (Průša et al.)
HANN_GAMMA = 0.25645
PHASE_MODES = ("network", "pghi")
MAG_FLOOR = 1e-9  # magnitude of an empty bin (and of the silence before a stream starts)
_LOG_FLOOR = float(torch.log(torch.tensor(MAG_FLOOR))) + 1e-6  # s at or below it: empty


def phase_delay_samples(mode: str, n_fft: int, hop: int) -> int:
    """Samples of delay the phase stage ``mode`` adds to a vocoder with this STFT."""
    if mode not in PHASE_MODES:
        raise ValueError(f"phase must be one of {PHASE_MODES}, got {mode!r}")
    return n_fft - hop if mode == "pghi" else 0


class PhaseRebuilder:
    """Settings and constants of the phase stage (shared by all of a model's streams).

    ``n_fft``: analysis window = FFT size (Hann), ``hop``: frame step (``n_fft / hop >= 4``
    for PGHI's gradients to hold), ``tol``: spectral peaks more than ``tol`` below the
    frame's largest magnitude (relative) are ignored.
    """

    def __init__(
        self,
        n_fft: int = 640,
        hop: int = 160,
        tol: float = 1e-5,
        device: str | torch.device = "cpu",
    ) -> None:
        if n_fft <= 0 or hop <= 0 or n_fft % hop:
            raise ValueError(f"n_fft ({n_fft}) must be a positive multiple of hop ({hop})")
        if n_fft // hop < 4:
            raise ValueError(f"PGHI needs n_fft / hop >= 4, got {n_fft} / {hop}")
        if not 0.0 < tol < 1.0:
            raise ValueError(f"tol must be in (0, 1), got {tol}")
        try:
            import numba  # noqa: F401 - the heap of _integrate_phase is compiled with it
        except ImportError as exc:
            raise ImportError(
                "the PGHI phase stage needs numba: pip install 'streamcodec[pghi]'"
            ) from exc
        self.n_fft, self.hop, self.tol = n_fft, hop, tol
        self.window = torch.hann_window(n_fft, periodic=True, device=device)
        self.synthesis_window = self.window / window_envelope(self.window, hop)
        k = n_fft // 2 + 1
        m = torch.arange(k, device=device, dtype=torch.float32)
        gamma = HANN_GAMMA * n_fft**2
        self.dt_scale = hop * n_fft / gamma
        self.df_scale = -gamma / (hop * n_fft)
        self.advance = 2 * math.pi * hop * m / n_fft  # phase advance of bin m's centre frequency
        # spectra here take the time origin at the frame start, the window's centre is n_fft / 2
        # later: a factor exp(-i pi m) = (-1)^m
        self.centre = math.pi * m
        self.bins = k
        self.log_tol = math.log(tol)

    @property
    def delay_samples(self) -> int:
        return phase_delay_samples("pghi", self.n_fft, self.hop)

    def stream(self, batch_size: int = 1) -> PhaseStream:
        return PhaseStream(self, batch_size)

    def process(self, pcm: torch.Tensor) -> torch.Tensor:
        """Offline: ``pcm: [B, T]`` -> ``[B, T]`` re-phased and aligned with the input."""
        if pcm.dim() != 2:
            raise ValueError(f"expected pcm: [B, T], got shape {tuple(pcm.shape)}")
        s = self.stream(pcm.shape[0])
        out = torch.cat([s.push(pcm), s.flush()], dim=1)
        return out[:, self.delay_samples : self.delay_samples + pcm.shape[1]]

    # --- the per-chunk computation -------------------------------------------------------------
    def rephase(
        self, frames: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``frames: [B, F, n_fft]`` (unwindowed, consecutive) -> (spectra ``[B, K, F]``, state).

        ``state``: the previous frame's log-magnitude, phase advance and phase (``None``: the
        stream starts from silence).
        """
        spec = torch.fft.rfft(frames * self.window, dim=-1)  # [B, F, K]
        mag = spec.abs()
        if state is None:
            b = frames.shape[0]
            state = (
                torch.full((b, self.bins), math.log(MAG_FLOOR), device=mag.device),
                self.advance.expand(b, self.bins).clone(),
                torch.zeros(b, self.bins, device=mag.device),
            )
        phase, new_state = _integrate_phase(
            mag, state, self.advance, self.dt_scale, self.df_scale, self.log_tol
        )
        return torch.polar(mag, phase + self.centre).transpose(1, 2), new_state


def _integrate_phase(
    mag: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    advance: torch.Tensor,
    dt_scale: float,
    df_scale: float,
    log_tol: float,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Phase ``[B, F, K]`` from magnitudes ``[B, F, K]`` (see the module docstring)."""
    from streamcodec.vocoder._pghi_heap import integrate_frames

    s_last, dt_last, phase_last = state
    s = torch.log(mag.clamp_min(MAG_FLOOR)).double()
    # phase advance per frame (frequency slope of s) and step per bin (time slope of s)
    ds_f = torch.zeros_like(s)
    ds_f[:, :, 1:-1] = 0.5 * (s[:, :, 2:] - s[:, :, :-2])
    dt = dt_scale * ds_f + advance.double()
    s_prev = torch.cat([s_last.double().unsqueeze(1), s[:, :-1]], dim=1)
    df = df_scale * (s - s_prev)
    # the heap runs on the CPU (numba), one stream at a time
    arrays = [t.detach().cpu().double().numpy() for t in (s, dt, df)]
    last = [t.detach().cpu().double().numpy() for t in (s_last, dt_last, phase_last)]
    phase = torch.from_numpy(
        np.stack(
            [
                integrate_frames(
                    *(a[b] for a in arrays), *(x[b] for x in last), log_tol, _LOG_FLOOR
                )
                for b in range(s.shape[0])
            ]
        )
    ).to(mag.device)
    # the state stays float64: the heap's visiting order must not depend on the chunking
    return phase.float(), (s[:, -1], dt[:, -1], phase[:, -1].contiguous())


class PhaseStream:
    """Streaming phase stage for ``batch_size`` streams: push PCM of any length, get the
    complete re-phased samples (``delay_samples`` behind); ``flush`` at the end."""

    def __init__(self, rebuilder: PhaseRebuilder, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.r = rebuilder
        self.batch_size = batch_size
        pad = rebuilder.n_fft - rebuilder.hop
        # analysis frames start n_fft - hop samples before the first input sample
        self._buf = torch.zeros(batch_size, pad, device=rebuilder.window.device)
        self._state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._tail: torch.Tensor | None = None
        self._closed = False

    @property
    def delay_samples(self) -> int:
        return self.r.delay_samples

    def push(self, pcm: torch.Tensor) -> torch.Tensor:
        """``pcm: [B, n]`` float -> ``[B, n']`` (all samples that are now complete)."""
        if self._closed:
            raise ValueError("push() after flush(): this phase stream is closed")
        if pcm.dim() != 2 or pcm.shape[0] != self.batch_size:
            raise ValueError(f"expected pcm: [{self.batch_size}, n], got {tuple(pcm.shape)}")
        r = self.r
        buf = torch.cat([self._buf, pcm.to(self._buf.device, torch.float32)], dim=1)
        n_frames = max(0, (buf.shape[1] - r.n_fft) // r.hop + 1)
        if n_frames == 0:
            self._buf = buf
            return buf.new_zeros(self.batch_size, 0)
        frames = buf.unfold(1, r.n_fft, r.hop)[:, :n_frames]
        spec, self._state = r.rephase(frames, self._state)
        self._buf = buf[:, n_frames * r.hop :]
        out, self._tail = overlap_add_stream(spec, self._tail, r.window, r.hop, r.synthesis_window)
        return out

    def flush(self) -> torch.Tensor:
        """End of stream: the remaining samples (the last ``delay_samples`` and any partial hop)."""
        if self._closed:
            return torch.zeros(self.batch_size, 0)
        r = self.r
        tail_len = self._buf.shape[1]  # input samples not yet output, plus the delay
        # n_fft zeros complete the frames of every pending sample
        out = self.push(self._buf.new_zeros(self.batch_size, r.n_fft))
        self._closed = True
        return out[:, :tail_len]
