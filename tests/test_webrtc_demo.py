"""The WebRTC demo: page serving, an aiortc stand-in for the browser, and headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.client import connect

from streamcodec import assets
from streamcodec.audio import load_audio, save_audio
from streamcodec.registry import load
from streamcodec.transport.peer import gather_on
from streamcodec.webdemo.browser import HeadlessChromium, find_chromium
from streamcodec.webdemo.roundtrip import envelope_correlation
from streamcodec.webdemo.server import DemoServer, DemoServerConfig

#: the returned audio's 20 ms loudness envelope must correlate with the input's at least this much
ENVELOPE_THRESHOLD = 0.6
CLIP = assets.speech_dir() / "3242-8112-0024.flac"  # 3.1 s


def mic_signal() -> np.ndarray:
    """The clip with 1 s of silence before it (the fake microphone starts playing when the
    page opens it, before the call is up) and 0.5 s after, at 16 kHz."""
    x = load_audio(CLIP)
    return np.concatenate([np.zeros(16000, np.float32), x, np.zeros(8000, np.float32)])


def mic_wav(tmp_path: Path) -> Path:
    from streamcodec.audio import resample

    return save_audio(tmp_path / "mic.wav", resample(mic_signal(), 16000, 48000), 48000)


def run(coro, timeout_s: float = 60.0):
    async def main():
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(main())


def test_envelope_correlation_tells_the_clip_from_noise_and_other_speech():
    x = load_audio(CLIP)
    other = load_audio(assets.speech_dir() / "1898-145715-0043.flac")
    delayed = np.concatenate([np.zeros(8000, np.float32), 0.3 * x, np.zeros(4000, np.float32)])
    corr, lag = envelope_correlation(x, delayed, 16000)
    assert corr > 0.99 and lag == pytest.approx(0.5, abs=0.02)
    noise = np.random.default_rng(0).standard_normal(x.size).astype(np.float32) * 0.1
    assert envelope_correlation(x, noise, 16000)[0] < 0.3
    assert envelope_correlation(x, other, 16000)[0] < 0.45


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, "", b""


def test_server_serves_the_page_script_and_404():
    async def main():
        async with DemoServer(load("codec2-700c"), DemoServerConfig(port=0)) as server:
            page = await asyncio.to_thread(_get, server.url)
            script = await asyncio.to_thread(_get, server.url + "demo.js?x=1")
            missing = await asyncio.to_thread(_get, server.url + "nope")
            return page, script, missing

    page, script, missing = run(main())
    assert page[0] == 200 and page[1].startswith("text/html") and b'src="demo.js"' in page[2]
    assert script[0] == 200 and "javascript" in script[1] and b"RTCPeerConnection" in script[2]
    assert missing[0] == 404
    with pytest.raises(ValueError, match="unknown link preset"):
        DemoServerConfig().preset("nope")


async def _python_browser(url: str, wav: Path, seconds: float) -> tuple[np.ndarray, list[dict]]:
    """Does what the page does, with aiortc: send a file as the mic, record what returns."""
    pc = RTCPeerConnection()
    player = MediaPlayer(str(wav))
    pc.addTrack(player.audio)
    received: list[np.ndarray] = []
    got_track = asyncio.Event()

    async def record(track) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            pcm = frame.to_ndarray().astype(np.float32) / 32768.0
            channels = len(frame.layout.channels)
            received.append(pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm[0])

    tasks = []

    @pc.on("track")
    def on_track(track) -> None:
        tasks.append(asyncio.create_task(record(track)))
        got_track.set()

    stats = []
    async with connect(url.replace("http", "ws") + "ws") as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["codec"] == "codec2-700c"
        with gather_on(("127.0.0.1",)):
            await pc.setLocalDescription(await pc.createOffer())
        await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "answer":
                break
        await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
        await asyncio.wait_for(got_track.wait(), 20)
        while not tasks[0].done():
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                if msg["type"] == "stats":
                    stats.append(msg)
            except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041
                pass
        await ws.send(json.dumps({"type": "bye"}))
    await pc.close()
    return np.concatenate(received), stats


def test_round_trip_through_the_python_peers_with_an_aiortc_browser(tmp_path):
    wav = mic_wav(tmp_path)

    async def main():
        async with DemoServer(load("codec2-700c"), DemoServerConfig(port=0)) as server:
            return await _python_browser(server.url, wav, 5.0)

    back, stats = run(main())
    back16 = load_audio(save_audio(tmp_path / "back.wav", back, 48000), 16000)
    corr, lag = envelope_correlation(mic_signal(), back16, 16000)
    assert corr > ENVELOPE_THRESHOLD, (corr, lag)
    assert 0.0 < lag < 1.5  # the codec, the packetiser and both jitter buffers add delay
    last = stats[-1]
    assert last["packets_received"] > 20 and last["payload_bps"] > 0
    assert 5000 < last["wire_bps"] < 20000 and last["packets_lost"] == 0


@pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("STREAMCODEC_REQUIRE_BROWSER"),
    reason="chromium is not installed",
)
def test_headless_chromium_round_trip(tmp_path):
    # .ci/run sets STREAMCODEC_REQUIRE_BROWSER=1: there a missing browser fails, not skips
    assert find_chromium() is not None, "chromium is not installed"
    wav = mic_wav(tmp_path)

    async def main():
        async with DemoServer(load("codec2-700c"), DemoServerConfig(port=0)) as server:
            url = server.url + "?autostart=1&record=6"
            async with HeadlessChromium(url, fake_audio=wav) as browser:
                try:
                    await browser.wait_for("window.demo && window.demo.recorded", 45.0)
                except TimeoutError:
                    state = await browser.evaluate("JSON.stringify(window.demo)")
                    pytest.fail(f"page state {state}; chromium log: {browser.tail_log()}")
                stats = await browser.evaluate("window.demo.stats")
                for _ in range(50):
                    if server.recordings:
                        break
                    await asyncio.sleep(0.1)
            return server.recordings, stats

    recordings, stats = run(main(), timeout_s=90.0)
    assert recordings, "the page sent no recording"
    back = load_audio(recordings[-1].data, 16000)
    assert back.size > 3 * 16000
    corr, lag = envelope_correlation(mic_signal(), back, 16000)
    assert corr > ENVELOPE_THRESHOLD, (corr, lag)
    assert stats["packets_received"] > 20 and stats["codec"] == "codec2-700c"
