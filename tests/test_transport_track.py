"""aiortc track adapters: decoded call audio as a MediaStreamTrack; a track into a call."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

from streamcodec.audio import save_audio
from streamcodec.transport.packetiser import PacketiserConfig
from streamcodec.transport.peer import PeerConfig
from streamcodec.transport.session import Call, CallConfig
from streamcodec.transport.toycodec import ToyCodec
from streamcodec.transport.track import DecodedAudioTrack, send_track

CFG = CallConfig(
    packetiser=PacketiserConfig(frames_per_message=2, link_budget_bps=None),
    peer=PeerConfig(host_addresses=("127.0.0.1",)),
    end_wait_s=0.5,
)


def run(coro, timeout_s: float = 30.0):
    async def main():
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(main())


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_decoded_audio_track_plays_the_call_audio_paced_in_real_time():
    codec = ToyCodec(28, 40)
    x = tone(0.8)

    async def main():
        a, b = await Call.pair(codec, codec, CFG)
        track = DecodedAudioTrack(b, ptime_ms=20)
        with pytest.raises(ValueError, match="ptime_ms"):
            DecodedAudioTrack(b, ptime_ms=500)
        lonely = Call(codec, CFG)
        with pytest.raises(ValueError, match="not connected"):
            DecodedAudioTrack(lonely)
        await lonely.close()
        await a.send_pcm(x)  # all at once: the track still plays it in real time
        await a.end_input()
        loop = asyncio.get_running_loop()
        frames, t0 = [], loop.time()
        while True:
            try:
                frames.append(await track.recv())
            except MediaStreamError:
                break
        elapsed = loop.time() - t0
        await a.close()
        await b.close()
        return frames, elapsed, track

    frames, elapsed, track = run(main())
    f0 = frames[0]
    assert (f0.sample_rate, f0.samples, f0.format.name, f0.layout.name) == (
        16000,
        320,
        "s16",
        "mono",
    )
    assert [f.pts for f in frames] == [320 * i for i in range(len(frames))]
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32) / 32767
    played = pcm[track.underflow_samples :] if track.underflow_samples else pcm
    assert played.size >= x.size
    assert elapsed >= 0.9 * (len(frames) - 1) * 0.02  # paced, not as fast as possible
    expected = codec.decode(codec.encode(x))
    start = int(np.argmax(np.abs(pcm) > 1e-3))  # skip the silence before the first frame
    got = pcm[start : start + expected.size]
    assert np.max(np.abs(got - expected[: got.size])) < 2e-4  # s16 rounding only
    assert track.readyState == "ended"


def test_send_track_feeds_a_media_player_file_through_the_call(tmp_path):
    codec = ToyCodec(28, 40)
    x = tone(0.6, 300.0)
    wav = save_audio(tmp_path / "in.wav", x, 16000)

    async def main():
        a, b = await Call.pair(codec, codec, CFG)
        player = MediaPlayer(str(wav))  # 20 ms s16 stereo 48 kHz frames, real time
        sent, out = await asyncio.gather(send_track(a, player.audio), b.receive_all(10))
        await a.close()
        await b.close()
        return sent, out

    sent, out = run(main())
    assert abs(sent - x.size) <= 960  # MediaPlayer drops the last partial 20 ms frame
    n = codec.frame_samples
    assert abs(out.size - x.size) <= 2 * n
    # the toy codec keeps level and pitch: the decoded tone has the input's level
    mid = out[out.size // 2 - 2 * n : out.size // 2 + 2 * n]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
