"""Root-only: a call between the host and a network namespace over a tbf + nftables link."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from streamcodec import assets
from streamcodec.audio import load_audio, save_audio
from streamcodec.linksim.netns import NetnsLink, NetnsLinkConfig, unavailable_reason

REASON = unavailable_reason()


def test_config_validation():
    with pytest.raises(ValueError, match="burst_bytes"):
        NetnsLinkConfig(burst_bytes=500)  # would drop the 810 B DTLS flight: never connects
    with pytest.raises(ValueError, match="loss_pct"):
        NetnsLinkConfig(loss_pct=101)


@pytest.mark.slow
@pytest.mark.skipif(REASON is not None, reason=f"namespace link unavailable: {REASON}")
def test_call_across_a_shaped_lossy_veth_pair(tmp_path):
    clip = save_audio(tmp_path / "in.wav", load_audio(assets.speech_dir() / "3242-8112-0024.flac"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with NetnsLink(NetnsLinkConfig(rate_bps=16000, loss_pct=10)) as link:
        url = f"ws://{link.host_address}:{port}"
        common = [
            "--room",
            "ns",
            "--input",
            str(clip),
            "--codec",
            "codec2-700c",
            "--link-budget",
            "16000",
            "--stats-interval",
            "10",
        ]
        host = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamcodec",
                "call",
                "--serve",
                "--server",
                url,
                "--output",
                str(tmp_path / "host.wav"),
                "--host-address",
                link.host_address,
                *common,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        inner = subprocess.run(
            [
                *link.exec_prefix,
                sys.executable,
                "-m",
                "streamcodec",
                "call",
                "--server",
                url,
                "--output",
                str(tmp_path / "ns.wav"),
                "--host-address",
                link.ns_address,
                *common,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        out_host, _ = host.communicate(timeout=60)
    done = re.search(r"received (\d+) of (\d+), lost (\d+)", inner.stdout)
    assert inner.returncode == 0 and done, inner.stdout + inner.stderr
    received, expected, lost = map(int, done.groups())
    assert received > 0 and received + lost == expected
    assert (tmp_path / "ns.wav").exists() and host.returncode == 0, out_host
    assert load_audio(tmp_path / "ns.wav").size > 16000
