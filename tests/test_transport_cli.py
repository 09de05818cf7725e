"""`streamcodec call` / `streamcodec serve`: real processes talking through the server."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from streamcodec.audio import load_audio, save_audio

ROOT = Path(__file__).resolve().parents[1]
CLIP = Path("/work/shared/data/dev/speech/1867/1867-154075-0003.flac")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    try:
        from streamcodec.registry import load

        load("codec2-700c")
    except (ImportError, ValueError) as exc:
        pytest.skip(f"codec2-700c unavailable: {exc}")
    if not CLIP.exists():
        pytest.skip("speech clip not available")
    d = tmp_path_factory.mktemp("cli")
    x = load_audio(CLIP)
    save_audio(d / "a.wav", x[:24000])  # 1.5 s
    save_audio(d / "b.wav", x[32000:52000])  # 1.25 s
    return d


# Runs only the transport sub-commands' own register()/run(): the full `streamcodec` entry
# point imports every sub-command (torch included, via `eval`), seconds per process here.
LIGHT = (
    "import argparse, sys\n"
    "from streamcodec.cli import call, serve\n"
    "p = argparse.ArgumentParser(); sub = p.add_subparsers()\n"
    "call.register(sub); serve.register(sub)\n"
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
)


async def start(*args: str, light: bool = False) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    entry = ["-c", LIGHT] if light else ["-m", "streamcodec"]
    return await asyncio.create_subprocess_exec(
        sys.executable, *entry, *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def wait_for_line(proc: asyncio.subprocess.Process, pattern: str, seen: list[str]) -> str:
    while line := (await proc.stdout.readline()).decode():
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"process ended before printing {pattern!r}:\n{''.join(seen)}")


async def finish(proc: asyncio.subprocess.Process, seen: list[str]) -> str:
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = "".join(seen) + rest.decode()
    assert proc.returncode == 0, text
    return text


def check_output(text: str, heard: Path, sent: Path) -> None:
    assert re.search(r"s \| send +\d+ b/s payload, +[\d.]+ kb/s wire", text), text  # live
    done = re.search(r"received (\d+) of (\d+), lost (\d+)", text)
    assert done and done.group(1) == done.group(2) and done.group(3) == "0", text
    y, x = load_audio(heard), load_audio(sent)
    assert abs(y.size - x.size) <= 640  # 40 ms Codec 2 frames
    assert np.sqrt(np.mean(y**2)) > 0.1 * np.sqrt(np.mean(x**2))  # speech, not silence


def test_two_terminal_call_exactly_as_in_the_readme(clips):
    url = f"ws://127.0.0.1:{free_port()}"

    async def main():
        seen1: list[str] = []
        t1 = await start("call", "--serve", "--server", url, "--room", "demo",
                         "--input", str(clips / "a.wav"), "--output", str(clips / "a_heard.wav"),
                         "--codec", "codec2-700c")  # fmt: skip
        await asyncio.wait_for(wait_for_line(t1, "hosting the signalling server", seen1), 30)
        t2 = await start("call", "--server", url, "--room", "demo",
                         "--input", str(clips / "b.wav"), "--output", str(clips / "b_heard.wav"),
                         "--codec", "codec2-700c")  # fmt: skip
        return await asyncio.gather(finish(t1, seen1), finish(t2, []))

    out1, out2 = asyncio.run(main())
    check_output(out1, clips / "a_heard.wav", clips / "b.wav")
    check_output(out2, clips / "b_heard.wav", clips / "a.wav")


def test_serve_with_token_and_two_call_processes(clips):
    port = free_port()
    url = f"ws://127.0.0.1:{port}"

    async def main():
        seen: list[str] = []
        server = await start("serve", "--port", str(port), "--token", "t0k", light=True)
        try:
            await asyncio.wait_for(wait_for_line(server, "signalling server on", seen), 30)
            wrong = await start("call", "--server", url, "--room", "r", "--token", "nope",
                                "--input", str(clips / "a.wav"), "--output", "x.wav",
                                light=True)  # fmt: skip
            wrong_out, _ = await asyncio.wait_for(wrong.communicate(), 30)
            assert wrong.returncode != 0 and b"unauthorised" in wrong_out, wrong_out
            # b plays to a "speaker": a PyAV output device, here the wav muxer on a file
            out_opts = {
                "a": ["--output", str(clips / "a_heard2.wav")],
                "b": ["--output", "speaker", "--speaker-format", "wav",
                      "--speaker-device", str(clips / "b_heard2.wav"), "--dtx"],
            }  # fmt: skip
            calls = [
                await start(
                    "call",
                    "--server",
                    url,
                    "--room",
                    "r",
                    "--token",
                    "t0k",
                    "--input",
                    str(clips / f"{me}.wav"),
                    *out_opts[me],
                    "--link-budget",
                    "8000",
                    "--redundancy",
                    "1",
                    light=True,
                )  # fmt: skip
                for me in ("a", "b")
            ]
            return await asyncio.gather(*(finish(c, []) for c in calls))
        finally:
            server.terminate()
            await server.wait()

    out_a, out_b = asyncio.run(main())
    check_output(out_a, clips / "a_heard2.wav", clips / "b.wav")
    check_output(out_b, clips / "b_heard2.wav", clips / "a.wav")
    assert "frames/message" in out_a
    assert re.search(r"\(\d+ frames, [1-9]\d* DTX\)", out_b), out_b  # b's DTX skipped silence
