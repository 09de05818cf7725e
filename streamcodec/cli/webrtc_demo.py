"""``streamcodec webrtc-demo``: a local page that sends your microphone through the SDK.

::

    streamcodec webrtc-demo                      # then open http://127.0.0.1:8080/
    streamcodec webrtc-demo --link-rate 8000 --loss 10
    streamcodec webrtc-demo --screenshot demo.png   # headless Chromium, fake mic, then exit

The browser sends its microphone (or a file) as a WebRTC audio track to Python peer A,
which encodes it to codec tokens and sends them over an unreliable data channel to
peer B (through the impaired-link relay when a link is chosen); B decodes and returns
the audio to the page as a WebRTC track. The page shows payload and wire bit/s, loss
and scrolling spectrograms of what it sent and what came back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from streamcodec.registry import DEFAULT_CODEC

    p = subparsers.add_parser(
        "webrtc-demo",
        help="serve a page that sends the microphone through the codec over WebRTC",
        description="Browser mic -> WebRTC -> Python peer A -> codec tokens on a data channel "
        "(optionally through a simulated link) -> Python peer B -> WebRTC -> browser.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0 = any)")
    p.add_argument("--codec", default=DEFAULT_CODEC, help=f"codec (default {DEFAULT_CODEC})")
    p.add_argument(
        "--link-rate",
        type=float,
        default=None,
        metavar="BPS",
        help="add a simulated link of this wire bit/s each way and make it the default",
    )
    p.add_argument("--loss", type=float, default=0.0, help="bursty loss of that link, percent")
    p.add_argument("--burst", type=float, default=3.0, help="mean loss-burst length, datagrams")
    p.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay of that link")
    p.add_argument("--jitter-ms", type=float, default=5.0, help="delay jitter of that link")
    p.add_argument(
        "--screenshot",
        type=Path,
        default=None,
        help="run the page in headless Chromium with a fake microphone, save a screenshot, "
        "check the round trip and exit",
    )
    p.add_argument(
        "--audio", type=Path, default=None, help="fake-microphone audio (default: bundled clip)"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="headless run length")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from streamcodec.linksim.link import GilbertElliott, LinkConfig
    from streamcodec.webdemo.bridge import LinkPreset
    from streamcodec.webdemo.server import DemoServerConfig

    config = DemoServerConfig(host=args.host, port=args.port)
    if args.link_rate is not None:
        if not args.link_rate > 0:
            raise ValueError(f"--link-rate must be > 0, got {args.link_rate}")
        loss = args.loss / 100.0
        link = LinkConfig(
            rate_bps=args.link_rate,
            delay_ms=args.delay_ms,
            jitter_ms=args.jitter_ms,
            burst=GilbertElliott.from_loss(loss, args.burst) if loss > 0 else None,
        )
        config.extra_presets.append(LinkPreset("cli", link))
        config.default_preset = "cli"
    return config


async def _serve(args: argparse.Namespace) -> int:
    from streamcodec.registry import load
    from streamcodec.webdemo.server import DemoServer

    codec = load(args.codec)
    async with DemoServer(codec, _config(args)) as server:
        print(f"streamcodec WebRTC demo ({codec.name}) at {server.url}; Ctrl-C to stop", flush=True)
        if args.screenshot is not None:
            return await _headless(server, args)
        await server.serve_forever()
    return 0


async def _headless(server, args: argparse.Namespace) -> int:
    import numpy as np

    from streamcodec import assets
    from streamcodec.audio import load_audio, save_audio
    from streamcodec.webdemo.browser import HeadlessChromium
    from streamcodec.webdemo.roundtrip import envelope_correlation

    with tempfile.TemporaryDirectory(prefix="streamcodec-demo-") as tmp:
        src = args.audio or assets.demo_clip()
        pcm = load_audio(src, 48000)
        wav = save_audio(Path(tmp) / "mic.wav", pcm, 48000)
        record_s = max(args.seconds - 1.0, 1.0)
        url = f"{server.url}?autostart=1&record={record_s:g}"
        async with HeadlessChromium(url, fake_audio=wav) as browser:
            await browser.wait_for("window.demo && window.demo.state === 'in call'", 40.0)
            await asyncio.sleep(args.seconds)
            path = await browser.screenshot(args.screenshot)
            stats = await browser.evaluate("JSON.stringify(window.demo.stats)")
            await browser.wait_for("window.demo.recorded", 10.0)
            for _ in range(40):
                if server.recordings:
                    break
                await asyncio.sleep(0.1)
        print(f"screenshot: {path}")
        print(f"last stats: {stats}")
        if not server.recordings:
            print("no recording came back from the page", file=sys.stderr)
            return 1
        back = load_audio(server.recordings[-1].data, 16000)
        sent = load_audio(src, 16000)[: back.size]
        corr, lag = envelope_correlation(sent, back, 16000)
        level = 20 * np.log10(np.sqrt(np.mean(back**2)) + 1e-9)
        print(
            f"round trip: {back.size / 16000:.1f} s returned, level {level:.1f} dBFS, envelope "
            f"correlation with the input {corr:.2f} at lag {lag:.2f} s"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    from streamcodec.cli.call import quiet_libraries

    quiet_libraries(args)
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        print("stopped")
        return 0
    except OSError as exc:
        print(f"streamcodec webrtc-demo: {exc}", file=sys.stderr)
        return 1
