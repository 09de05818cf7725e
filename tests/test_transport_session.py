"""Calls end to end: two peers in one process on loopback through the codec."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest

from streamcodec.audio import load_audio
from streamcodec.codec import Codec, DecoderSession, EncoderSession
from streamcodec.transport.packetiser import PacketiserConfig
from streamcodec.transport.packets import parse_header
from streamcodec.transport.peer import PeerConfig
from streamcodec.transport.session import Call, CallConfig
from streamcodec.transport.toycodec import ToyCodec

CLIP = Path("/work/shared/data/dev/speech/1867/1867-154075-0003.flac")
LOOPBACK = PeerConfig(host_addresses=("127.0.0.1",))


def speech(seconds: float) -> np.ndarray:
    if not CLIP.exists():
        pytest.skip(f"speech clip {CLIP} not available")
    x = load_audio(CLIP)
    return x[16000 : 16000 + int(16000 * seconds)]


def config(**packetiser) -> CallConfig:
    packetiser.setdefault("link_budget_bps", None)
    return CallConfig(packetiser=PacketiserConfig(**packetiser), peer=LOOPBACK, end_wait_s=0.5)


def run(coro, timeout_s: float = 30.0):
    async def main():
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(main())


async def stream(call: Call, pcm: np.ndarray, speed: float = 1.0, chunk: int = 320) -> None:
    """Send ``pcm`` in 20 ms chunks at ``speed`` x real time, then end the input."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(0, pcm.size, chunk):
        await call.send_pcm(pcm[i : i + chunk])
        wait = start + (i + chunk) / call.codec.sample_rate / speed - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # pacing the input clock
    await call.end_input()


def test_call_decoded_audio_equals_offline_decode_in_real_time():
    codec = ToyCodec(28, 40)
    x = speech(2.0)

    async def main():
        a, b = await Call.pair(codec, codec, config(frames_per_message=2))
        assert a.remote_stream == b.remote_stream
        _, out = await asyncio.gather(stream(a, x), b.receive_all(10))
        sa, sb = a.stats(), b.stats()
        await a.close()
        await b.close()
        return out, sa, sb

    out, sa, sb = run(main())
    offline = codec.decode(codec.encode(x))
    assert np.array_equal(out, offline)
    assert sb.rx.packets_received == sa.packets_sent and sb.rx.packets_lost == 0
    assert sb.rx.frames_concealed == 0 and sb.rx.packets_late == 0
    assert sb.rx.frames_played == len(codec.encode(x)) == sa.tx.frames_sent
    assert sa.wire_sent.wire_bytes > 93 * sa.packets_sent  # the tap saw every message


class RecordingCodec(Codec):
    """Wraps a codec and records the frames its decoders are given."""

    def __init__(self, inner: Codec) -> None:
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.frame_samples = inner.frame_samples
        self.bits_per_frame = inner.bits_per_frame
        self.delay_samples = inner.delay_samples
        self.decoded: list[bytes | None] = []

    def encoder(self) -> EncoderSession:
        return self.inner.encoder()

    def decoder(self) -> DecoderSession:
        inner, log = self.inner.decoder(), self.decoded

        class _Rec(DecoderSession):
            def push(self, frame):
                log.append(None if frame is None else bytes(frame))
                return inner.push(frame)

            def flush(self):
                return inner.flush()

            def _decode_frame(self, frame):  # pragma: no cover - push is overridden
                raise AssertionError

            def _conceal(self):  # pragma: no cover
                raise AssertionError

        return _Rec(self)


def test_call_codec2_700c_tokens_arrive_bit_exact():
    try:
        from streamcodec.registry import load

        codec2 = load("codec2-700c")
    except (ImportError, ValueError) as exc:
        pytest.skip(f"codec2-700c unavailable: {exc}")
    x = speech(2.0)
    rec = RecordingCodec(codec2)

    async def main():
        a, b = await Call.pair(rec, rec, config(frames_per_message=4))
        _, out = await asyncio.gather(stream(a, x, speed=4.0), b.receive_all(10))
        await a.close()
        await b.close()
        return out

    out = run(main())
    frames = codec2.encode(x)
    assert rec.decoded == frames  # 28-bit frames survive bit packing and the network
    assert out.shape == codec2.decode(frames).shape
    once, twice = codec2.decode(frames), codec2.decode(frames)
    if np.array_equal(once, twice):  # PCM comparison only means something if decode is pure
        assert np.array_equal(out, once)


def test_call_with_10_percent_loss_continues_conceals_and_counts():
    codec = ToyCodec(28, 40)
    x = speech(4.0)
    rng = random.Random(1234)
    dropped: list[int] = []

    def lossy(message: bytes) -> bool:
        if rng.random() < 0.10:
            dropped.append(parse_header(message).seq)
            return False
        return True

    async def main():
        a, b = await Call.pair(
            codec, codec, config(frames_per_message=2), hooks_b={"message_filter": lossy}
        )
        _, out = await asyncio.gather(stream(a, x, speed=4.0), b.receive_all(10))
        assert a.peer.state == "connected" and b.peer.state == "connected"  # call goes on
        sa, sb = a.stats(), b.stats()
        await a.close()
        await b.close()
        return out, sa, sb

    out, sa, sb = run(main())
    rx = sb.rx
    assert 5 <= len(dropped) <= 12  # 50 packets at 10 %
    assert rx.packets_received + rx.packets_lost == sa.packets_sent  # sent = received + lost
    assert rx.packets_lost == len(dropped)
    assert rx.frames_concealed >= 2 * len(dropped) - 2  # a trailing loss may end the stream
    assert rx.frames_played == sa.tx.frames_sent - 2 * len(dropped)
    # real frames are exactly where they belong: compare the decoded timeline per frame
    offline = codec.decode(codec.encode(x))
    n = codec.frame_samples
    frames_lost = {2 * s + j for s in dropped for j in (0, 1)}
    good = [
        i for i in range(offline.size // n) if i not in frames_lost and i - 1 not in frames_lost
    ]
    assert out.size >= offline.size - n * len(frames_lost)

    # the timeline is kept: every clean frame has the offline level at its own place, and
    # every lost frame was concealed by the codec (the toy repeats the last frame at half level)
    def level(sig: np.ndarray, i: int) -> float:
        return float(np.sqrt(np.mean(sig[i * n : (i + 1) * n].astype(np.float64) ** 2)))

    assert len(good) > 60
    for i in good:
        assert level(out, i) == pytest.approx(level(offline, i), rel=1e-3, abs=1e-6)
    for i in sorted(frames_lost):
        if i - 1 not in frames_lost and (i + 1) * n <= out.size:
            assert level(out, i) == pytest.approx(0.5 * level(out, i - 1), rel=1e-3, abs=1e-6)


def test_call_redundancy_recovers_losses():
    codec = ToyCodec(28, 40)
    x = speech(3.0)
    drop = {3, 9, 15, 21, 27}

    async def main():
        a, b = await Call.pair(
            codec,
            codec,
            config(frames_per_message=2, redundancy_frames=2),
            hooks_b={"message_filter": lambda m: parse_header(m).seq not in drop},
        )
        _, out = await asyncio.gather(stream(a, x, speed=4.0), b.receive_all(10))
        sb = b.stats()
        await a.close()
        await b.close()
        return out, sb

    out, sb = run(main())
    assert sb.rx.packets_lost == len(drop)
    assert sb.rx.frames_recovered == 2 * len(drop) and sb.rx.frames_concealed == 0
    assert np.array_equal(out, codec.decode(codec.encode(x)))  # every frame recovered


def test_two_way_call_with_dtx_and_a_variable_rate_codec():
    fixed, vbr = ToyCodec(28, 40), ToyCodec(None, 20)
    talk = speech(1.0)
    x = np.concatenate([talk, np.zeros(16000, dtype=np.float32), talk])
    loader = {c.name: c for c in (fixed, vbr)}.__getitem__

    async def main():
        cfg = config(frames_per_message=2, dtx=True)
        a, b = await Call.pair(
            fixed, vbr, cfg, hooks_a={"codec_loader": loader}, hooks_b={"codec_loader": loader}
        )
        assert a.remote_stream.bits_per_frame is None and b.remote_stream.bits_per_frame == 28
        results = await asyncio.gather(
            stream(a, x, speed=2.0), stream(b, x, speed=2.0), a.receive_all(10), b.receive_all(10)
        )
        sa, sb = a.stats(), b.stats()
        await a.close()
        await b.close()
        return results[2], results[3], sa, sb

    heard_by_a, heard_by_b, sa, sb = run(main())
    for codec, heard, tx, rx in (
        (fixed, heard_by_b, sa.tx, sb.rx),
        (vbr, heard_by_a, sb.tx, sa.rx),
    ):
        assert tx.frames_dtx > 0.5 / codec.frame_duration_s  # most of the silent second
        assert rx.talkspurts >= 2 and rx.packets_lost == 0 and rx.frames_concealed == 0
        assert rx.frames_played == tx.frames_sent
        # the silence comes back as zeros, so the timeline length is kept
        assert abs(heard.size - x.size) <= codec.frame_samples
        mid = heard[int(1.4 * 16000) : int(1.6 * 16000)]
        assert np.all(mid == 0)


def test_malformed_packets_on_the_channel_are_counted_and_ignored():
    codec = ToyCodec(28, 40)
    x = speech(1.0)

    async def main():
        a, b = await Call.pair(codec, codec, config(frames_per_message=1))
        junk = [b"", b"\x00" * 3, b"\xff" * 40, bytes([0x40, 99, 0, 0, 0, 0, 1, 1, 2, 3, 4])]
        for j in junk:
            a.peer.send(j) if j else None
        _, out = await asyncio.gather(stream(a, x, speed=4.0), b.receive_all(10))
        sb = b.stats()
        await a.close()
        await b.close()
        return out, sb, len([j for j in junk if j])

    out, sb, n_junk = run(main())
    assert sb.malformed_packets == n_junk
    assert np.array_equal(out, codec.decode(codec.encode(x)))


def test_call_rejects_mismatched_remote_codec_and_bad_input():
    codec = ToyCodec(28, 40)

    async def main():
        def loader(name: str) -> Codec:
            return ToyCodec(28, 40)  # a codec that differs from the one announced

        other = ToyCodec(28, 20)
        with pytest.raises(ValueError, match="does not match"):
            await Call.pair(
                codec,
                other,
                config(),
                hooks_a={"codec_loader": loader},
                hooks_b={"codec_loader": {codec.name: codec}.__getitem__},
            )
        a = Call(codec, config())
        with pytest.raises(TypeError):
            Call("codec2-700c", config())  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await a.send_pcm(np.zeros((2, 10), dtype=np.float32))
        await a.end_input()
        with pytest.raises(ValueError, match="after end_input"):
            await a.send_pcm(np.zeros(10, dtype=np.float32))
        await a.close()

    run(main())


def test_call_opus_6k_variable_rate_decoded_equals_offline():
    try:
        from streamcodec.registry import load

        opus = load("opus-6k")
    except (ImportError, ValueError) as exc:
        pytest.skip(f"opus-6k unavailable: {exc}")
    x = speech(1.5)

    async def main():
        a, b = await Call.pair(opus, opus, config(frames_per_message=5))
        _, out = await asyncio.gather(stream(a, x, speed=4.0), b.receive_all(10))
        sb = b.stats()
        await a.close()
        await b.close()
        return out, sb

    out, sb = run(main())
    assert opus.bits_per_frame is None  # length-prefixed frames in the packets
    assert np.array_equal(out, opus.decode(opus.encode(x)))
    assert sb.rx.packets_lost == 0 and sb.rx.frames_concealed == 0


def test_send_realtime_paces_from_the_given_capture_start():
    """``start_s`` in the past: chunks already due go out at once (their lateness recorded),
    the rest on the schedule that started at ``start_s`` (virtual clock: exact times)."""
    from types import SimpleNamespace

    from streamcodec.linksim import clock

    class Sender:
        codec = SimpleNamespace(sample_rate=16000)

        def __init__(self, loop):
            self._loop, self.sent = loop, []

        async def send_pcm(self, pcm):
            self.sent.append(self._loop.time())

        async def end_input(self):
            pass

    async def main():
        s = Sender(asyncio.get_running_loop())
        t0 = s._loop.time()
        await asyncio.sleep(0.1)  # the microphone started 100 ms before the sender runs
        late: list[float] = []
        await Call.send_realtime(s, np.zeros(3200, np.float32), 20.0, late, start_s=t0)
        return t0, s.sent, late

    t0, sent, late = clock.run(main)
    offsets = [round(t - t0, 6) for t in sent]
    assert offsets == [0.1] * 6 + [0.12, 0.14, 0.16, 0.18]
    assert [round(x, 6) for x in late] == [0.1, 0.08, 0.06, 0.04, 0.02, 0.0, 0, 0, 0, 0]
