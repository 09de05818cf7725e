"""aiortc media adapters: play a call's decoded PCM as a track; feed a track into a call.

* :class:`DecodedAudioTrack` is an audio ``MediaStreamTrack`` whose ``recv()`` returns
  ``ptime_ms`` frames of s16 mono PCM at the remote codec's rate, paced to real time
  (silence on underflow), so anything that consumes aiortc tracks (``MediaRecorder``,
  an RTP sender, a custom sink) can play the decoded call audio.
* :func:`send_track` reads any audio track (``MediaPlayer(...).audio``: 20 ms s16
  stereo 48 kHz frames), converts it with ``av.AudioResampler`` to mono float at the
  codec's rate and sends it through the call.
"""

from __future__ import annotations

import asyncio
import fractions
import logging

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streamcodec.transport.session import Call

logger = logging.getLogger(__name__)


class DecodedAudioTrack(MediaStreamTrack):
    """The remote side's decoded audio of a connected :class:`Call` as an aiortc track."""

    kind = "audio"

    def __init__(self, call: Call, ptime_ms: float = 20.0, max_buffer_ms: float = 1000.0) -> None:
        super().__init__()
        stream = call.remote_stream
        if stream is None:
            raise ValueError("the call is not connected yet (no remote stream)")
        if not 1.0 <= ptime_ms <= 120.0:
            raise ValueError(f"ptime_ms must be in 1..120, got {ptime_ms}")
        self.sample_rate = stream.sample_rate
        self.samples_per_frame = int(round(self.sample_rate * ptime_ms / 1000.0))
        self._max_buffer = int(self.sample_rate * max_buffer_ms / 1000.0)
        self._call = call
        self._fifo = np.zeros(0, dtype=np.float32)
        self._ended = False
        self._start_s: float | None = None
        self._pts = 0
        self._pump_task: asyncio.Task[None] | None = None
        self.underflow_samples = 0
        self.dropped_samples = 0

    async def _pump(self) -> None:
        while (pcm := await self._call.recv_pcm()) is not None:
            self._fifo = np.concatenate([self._fifo, pcm])
            excess = self._fifo.size - self._max_buffer
            if excess > 0:  # the producer ran ahead of real time: keep the newest audio
                self._fifo = self._fifo[excess:]
                self.dropped_samples += excess
        self._ended = True

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())
        if self._start_s is None:
            self._start_s = loop.time()
        else:
            wait = self._start_s + self._pts / self.sample_rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # real-time pacing of the output clock
        n = self.samples_per_frame
        if self._ended and self._fifo.size == 0:
            self.stop()
            raise MediaStreamError
        take = self._fifo[:n]
        self._fifo = self._fifo[take.size :]
        if take.size < n:
            self.underflow_samples += n - take.size
            take = np.concatenate([take, np.zeros(n - take.size, dtype=np.float32)])
        pcm16 = (np.clip(take, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm16[None, :], format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self._pts += n
        return frame

    def stop(self) -> None:
        if self._pump_task is not None and not self._pump_task.done():
            self._pump_task.cancel()
        super().stop()


def frame_to_pcm(resampler: av.AudioResampler, frame: av.AudioFrame | None) -> np.ndarray:
    """Resample one frame (``None`` flushes) to ``[T] float32`` mono."""
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


async def send_track(call: Call, track: MediaStreamTrack, end_input: bool = True) -> int:
    """Send an audio track through ``call`` until the track ends; returns samples sent."""
    if track.kind != "audio":
        raise ValueError(f"send_track needs an audio track, got {track.kind!r}")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=call.codec.sample_rate)
    sent = 0
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            break
        pcm = frame_to_pcm(resampler, frame)
        if pcm.size:
            await call.send_pcm(pcm)
            sent += pcm.size
    tail = frame_to_pcm(resampler, None)
    if tail.size:
        await call.send_pcm(tail)
        sent += tail.size
    if end_input:
        await call.end_input()
    return sent
