"""`streamcodec demo`, the README's main job: a loopback WebRTC call through a codec."""

from __future__ import annotations

import numpy as np
import pytest

from streamcodec import assets
from streamcodec.audio import load_audio, save_audio
from streamcodec.cli import main


@pytest.fixture
def short_clip(tmp_path):
    x = load_audio(assets.demo_clip())[: 16000 * 2]
    return save_audio(tmp_path / "short.wav", x), x


def test_demo_loopback_call_delivers_every_frame(short_clip, tmp_path, capsys):
    pytest.importorskip("aiortc")
    path, x = short_clip
    assert main(["demo", "--input", str(path), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "loopback WebRTC" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("received:"))
    got, sent = line.split()[1].split("/")
    assert got == sent and int(sent) > 0
    assert " 0 concealed" in line and " 0 messages lost" in line
    heard = load_audio(tmp_path / "out" / "decoded_codec2-700c.wav")
    assert abs(heard.size - x.size) < 1600 and np.abs(heard).max() > 0.01


def test_demo_file_round_trip_and_bad_budget(short_clip, tmp_path, capsys):
    path, _ = short_clip
    assert main(["demo", "--no-call", "--input", str(path), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    bps = int(next(ln for ln in out.splitlines() if ln.startswith("payload:")).split()[1])
    assert 700 <= bps <= 730  # 28 bits / 40 ms, plus the flushed tail frame of a 2 s clip
    with pytest.raises(SystemExit, match="-5"):
        main(["demo", "--link-budget", "-5", "--input", str(path)])
