"""Per-stream vocoder session: push log-mel chunks of any length, get audio out at once.

The session owns all state (conv left context, overlap-add tail, block counter),
so one :class:`~streamcodec.vocoder.inference.Vocoder` serves many streams.
Concatenated outputs of ``push`` ... ``flush`` equal the offline synthesis
delayed by ``delay_samples`` (the first ``delay_samples`` output samples are
silence), for any chunking.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from streamcodec.vocoder.istft import overlap_add_stream
from streamcodec.vocoder.model import GeneratorState

if TYPE_CHECKING:
    from streamcodec.vocoder.inference import Vocoder


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: leave as is).

    A streaming step is a few hundred tiny ops: on a loaded machine extra threads
    wait on each other far longer than they help, so sessions use one thread by
    default. (The setting is process-wide; concurrent sessions only affect speed.)
    """
    prev = torch.get_num_threads()
    if n is None or n == prev:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


class VocoderStream:
    """Streaming synthesis for ``batch_size`` independent streams (usually 1).

    ``threads``: torch intra-op threads while a chunk is synthesised (``None``: unchanged).
    The stream keeps the generator it was opened with (:meth:`Vocoder.streaming_generator`:
    the TorchScript trace on a CPU): weights changed later reach new streams, not this one.
    """

    def __init__(self, vocoder: Vocoder, batch_size: int = 1, threads: int | None = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.vocoder = vocoder
        self.batch_size = batch_size
        self.threads = threads
        self._generator = vocoder.streaming_generator()
        self._state: GeneratorState | None = None
        self._tail: torch.Tensor | None = None
        self._blocks_out = 0  # synthesis blocks emitted so far
        self._closed = False
        rephaser = vocoder.rephaser
        self._phase = rephaser.stream(batch_size) if rephaser is not None else None

    @property
    def delay_samples(self) -> int:
        return self.vocoder.delay_samples

    def push(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel: [B, M, n]`` (or ``[M, n]`` for B = 1) -> audio ``[B, n * hop]`` float32."""
        if self._closed:
            raise ValueError("push() after flush(): this vocoder stream is closed")
        mel = self.vocoder.check_mel(mel)
        if mel.shape[0] != self.batch_size:
            raise ValueError(f"mel batch {mel.shape[0]} != stream batch_size {self.batch_size}")
        return self._step(mel)

    def _step(self, mel: torch.Tensor) -> torch.Tensor:
        with intra_op_threads(self.threads), torch.inference_mode():
            return self._synth(mel)

    def _synth(self, mel: torch.Tensor) -> torch.Tensor:
        v = self.vocoder
        if mel.shape[-1] == 0:
            return torch.zeros(mel.shape[0], 0, device=mel.device)
        spec, self._state = self._generator(mel, self._state)
        out, self._tail = overlap_add_stream(
            spec, self._tail, v.window, v.cfg.hop_samples, v.synthesis_window
        )
        # blocks before ``delay_frames`` belong to the time before the stream started
        hop = v.cfg.hop_samples
        preroll = max(0, v.cfg.delay_frames - self._blocks_out)
        if preroll:
            out[:, : preroll * hop] = 0.0
        self._blocks_out += mel.shape[-1]
        return self._rephase(out.clamp(-1.0, 1.0))

    def _rephase(self, out: torch.Tensor) -> torch.Tensor:
        if self._phase is None:
            return out
        return self._phase.push(out).clamp(-1.0, 1.0)

    def flush(self) -> torch.Tensor:
        """End of stream: the last ``delay_samples`` samples ``[B, delay_samples]``."""
        if self._closed:
            return torch.zeros(self.batch_size, 0)
        v = self.vocoder
        pad = torch.full(
            (self.batch_size, v.cfg.mel.n_mels, v.cfg.lookahead_frames),
            v.cfg.silence_log_mel,
            device=v.window.device,
        )
        head = self._step(pad)
        self._closed = True
        tail = self._tail if self._tail is not None else head.new_zeros(self.batch_size, 0)
        net_delay = v.cfg.delay_samples
        zero = min(tail.shape[1], max(0, net_delay - self._blocks_out * v.cfg.hop_samples))
        if zero:  # a stream shorter than the pre-roll
            tail = tail.clone()
            tail[:, :zero] = 0.0
        tail = tail.clamp(-1.0, 1.0)
        if self._phase is not None:
            with intra_op_threads(self.threads), torch.inference_mode():
                tail = torch.cat([self._phase.push(tail), self._phase.flush()], dim=1).clamp(-1, 1)
        return torch.cat([head, tail], dim=1)
