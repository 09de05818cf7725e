"""Tests of the streaming mel vocoder (tiny random-init models; CPU; seconds)."""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import streamcodec
from streamcodec.audio import save_audio
from streamcodec.cli.train import RECIPES, recipe_parser
from streamcodec.vocoder import Vocoder, VocoderConfig
from streamcodec.vocoder.codec import MelVocoderCodec
from streamcodec.vocoder.istft import overlap_add, overlap_add_stream

TINY = VocoderConfig(dim=32, intermediate_dim=64, num_layers=2)


def tiny_vocoder(
    lookahead_frames: int = 0, seed: int = 0, integrate_phase: bool = False
) -> Vocoder:
    cfg = VocoderConfig(
        dim=32,
        intermediate_dim=64,
        num_layers=2,
        lookahead_frames=lookahead_frames,
        integrate_phase=integrate_phase,
    )
    v = Vocoder.from_config(cfg, seed=seed)
    # random init gives near-silent output; scale the head up so comparisons are meaningful
    with torch.no_grad():
        v.generator.head.bias[: v.generator.n_bins] += 2.0
    return v


def random_mel(frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 80, frames, generator=g) - 4.0


def test_generator_shapes() -> None:
    v = tiny_vocoder()
    spec, state = v.generator(random_mel(13, batch=3))
    assert spec.shape == (3, 321, 13) and spec.is_complex()
    assert len(state.context) == 1 + TINY.num_layers
    assert v.synthesize(random_mel(13, batch=3)).shape == (3, 13 * 160)
    assert v.synthesize(random_mel(0)).shape == (1, 0)
    vi = tiny_vocoder(integrate_phase=True)
    spec, state = vi.generator(random_mel(13, batch=3))
    assert spec.shape == (3, 321, 13) and vi.generator.head.out_features == 3 * 321
    assert len(state.context) == 2 + TINY.num_layers  # + the accumulated phase
    acc = state.context[-1]
    assert acc.shape == (3, 321) and acc.dtype == torch.float64
    assert bool(((acc >= 0) & (acc < 2 * np.pi)).all())


def _one_bin_vocoder(integrate_phase: bool, m: int) -> Vocoder:
    """A generator whose output ignores its input: bin ``m`` loud, constant phase (and step)."""
    v = tiny_vocoder(integrate_phase=integrate_phase)
    k = v.generator.n_bins
    with torch.no_grad():
        v.generator.head.weight.zero_()
        v.generator.head.bias.zero_()
        v.generator.head.bias[:k] = -20.0
        v.generator.head.bias[m] = 0.0
    return v


def test_integrated_phase_keeps_a_steady_tone_in_tune() -> None:
    """Frame phase: the same phase every frame makes the output periodic in the hop, so a
    tone at bin 9 (225 Hz) comes out on the 100 Hz grid; integrated phase keeps 225 Hz."""
    mel = random_mel(200)
    for integrate, allowed in ((True, (225.0,)), (False, (200.0, 300.0))):
        y = _one_bin_vocoder(integrate, 9).synthesize(mel)[0, 2000:-2000].double().numpy()
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        peak = np.fft.rfftfreq(len(y), 1 / 16000)[int(np.argmax(spectrum))]
        assert min(abs(peak - f) for f in allowed) < 3.0, (integrate, peak)
    # the phase advances by the bin's centre frequency over each hop (delta = 0 here)
    v = _one_bin_vocoder(True, 9)
    spec, _ = v.generator(mel[..., :6])
    want = torch.remainder(
        torch.arange(1, 7, dtype=torch.float64) * v.generator.bin_step[9], 2 * np.pi
    )
    torch.testing.assert_close(
        torch.remainder(spec[0, 9].angle().double(), 2 * np.pi), want, atol=1e-5, rtol=0
    )


def test_integrated_phase_gradient_reaches_only_recent_steps_in_training() -> None:
    gen = tiny_vocoder(integrate_phase=True).generator
    k, w = gen.n_bins, 640 // 160  # the frames one output sample overlaps
    for training, reached in ((True, set(range(10 - w + 1, 11))), (False, None)):
        gen.train(training)
        delta = torch.randn(1, 16, k, requires_grad=True)
        phase, _ = gen._integrate(torch.zeros(1, 16, k), delta, None)
        phase[0, 10, 5].backward()
        got = {j for j in range(16) if delta.grad[0, j, 5] != 0}
        assert got == (reached if training else set(range(11))), (training, got)
    gen.train(False)


def test_integrated_phase_conversion_starts_from_the_same_output() -> None:
    from streamcodec.training.vocoder_gan import integrated_phase_state
    from streamcodec.vocoder.model import VocoderGenerator

    v = tiny_vocoder()
    gen = VocoderGenerator(replace(v.cfg, integrate_phase=True))
    gen.load_state_dict(integrated_phase_state(v.generator.state_dict(), gen))
    mel = random_mel(60)
    ref = v.synthesize(mel)
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(Vocoder(gen).synthesize(mel), ref, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="head has 963 outputs, expected 642"):
        integrated_phase_state(gen.state_dict(), gen)
    # another step scale: converted for it, the same output again
    gen2 = VocoderGenerator(replace(v.cfg, integrate_phase=True, phase_step_scale=2.0))
    gen2.load_state_dict(integrated_phase_state(v.generator.state_dict(), gen2))
    torch.testing.assert_close(Vocoder(gen2).synthesize(mel), ref, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="phase_step_scale must be > 0, got 0.0"):
        VocoderConfig(phase_step_scale=0.0)


def test_fresh_phase_conversion_keeps_backbone_and_magnitude(tmp_path: Path) -> None:
    from streamcodec.training.vocoder_gan import PRESETS, Trainer, integrated_phase_state
    from streamcodec.vocoder.model import VocoderGenerator

    v = tiny_vocoder()
    gen = VocoderGenerator(replace(v.cfg, integrate_phase=True))
    own_w, own_b = gen.head.weight.detach().clone(), gen.head.bias.detach().clone()
    state = integrated_phase_state(v.generator.state_dict(), gen, fresh_phase=True)
    gen.load_state_dict(state)
    k = gen.n_bins
    old = v.generator.state_dict()
    assert all(torch.equal(state[n], t) for n, t in old.items() if not n.startswith("head."))
    assert torch.equal(state["head.weight"][:k], old["head.weight"][:k])  # magnitude rows
    assert torch.equal(state["head.weight"][k : 2 * k], own_w[k : 2 * k])  # phase: fresh
    assert torch.equal(state["head.bias"][k : 2 * k], own_b[k : 2 * k])
    assert not state["head.weight"][2 * k :].any() and not state["head.bias"][2 * k :].any()
    mel = random_mel(60)
    with torch.no_grad():
        spec_old, _ = v.generator(mel)
        spec_new, _ = gen(mel)
    torch.testing.assert_close(spec_new.abs(), spec_old.abs(), atol=1e-5, rtol=1e-5)
    assert (spec_new.angle() - spec_old.angle()).abs().max() > 0.1  # the phase is not kept
    # through the trainer: only a frame-phase generator into an integrated run
    cfg = PRESETS["tiny"]
    src = Trainer(cfg, torch.device("cpu"), bf16=False)
    Vocoder(src.ema).save(tmp_path / "shipped", src.training_info())
    icfg = replace(cfg, vocoder=replace(cfg.vocoder, integrate_phase=True))
    tr = Trainer(icfg, torch.device("cpu"), bf16=False)
    tr.init_from_shipped(tmp_path / "shipped", fresh_phase=True)
    assert not tr.gen.head.bias[2 * tr.gen.n_bins :].any()
    assert tr.phase_conversion == "fresh"  # recorded in the session history
    with pytest.raises(ValueError, match="fresh_phase needs a frame-phase generator"):
        Trainer(cfg, torch.device("cpu"), bf16=False).init_from_shipped(
            tmp_path / "shipped", fresh_phase=True
        )


def test_istft_head_inverts_stft_exactly() -> None:
    x = torch.randn(2, 8000)
    window = torch.hann_window(640)
    spec = torch.stft(x, 640, 160, 640, window, center=False, return_complex=True)
    y = overlap_add(spec, window, 160)
    # interior samples (covered by all 4 overlapping frames) come back exactly
    torch.testing.assert_close(y[:, 480:-480], x[:, 480 : y.shape[1] - 480], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "chunks", [[1], [2], [3, 1, 7], [64]], ids=["by1", "by2", "mixed", "whole"]
)
def test_istft_stream_equals_offline(chunks: list[int]) -> None:
    spec = torch.randn(1, 321, 20, dtype=torch.complex64)
    window = torch.hann_window(640)
    ref = overlap_add(spec, window, 160)
    parts, tail, i, k = [], None, 0, 0
    while i < 20:
        n = chunks[k % len(chunks)]
        out, tail = overlap_add_stream(spec[..., i : i + n], tail, window, 160)
        parts.append(out)
        i, k = i + n, k + 1
    got = torch.cat([*parts, tail], dim=1)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("integrate", [False, True], ids=["frame_phase", "integrated_phase"])
@pytest.mark.parametrize("lookahead", [0, 1], ids=["la0", "la1"])
@pytest.mark.parametrize(
    "chunks", [[1], [2], [4], [5, 1, 3, 16], [200]], ids=["by1", "by2", "by4", "mixed", "whole"]
)
def test_stream_equals_offline(lookahead: int, chunks: list[int], integrate: bool) -> None:
    v = tiny_vocoder(lookahead, integrate_phase=integrate)
    mel = random_mel(41, batch=2)
    ref = v.synthesize(mel)
    stream = v.stream(batch_size=2)
    parts, i, k = [], 0, 0
    while i < mel.shape[-1]:
        n = chunks[k % len(chunks)]
        out = stream.push(mel[..., i : i + n])
        assert out.shape == (2, min(n, mel.shape[-1] - i) * 160)
        parts.append(out)
        i, k = i + n, k + 1
    parts.append(stream.flush())
    got = torch.cat(parts, dim=1)
    d = v.cfg.delay_samples
    assert got.shape[1] == ref.shape[1] + d
    assert torch.all(got[:, :d] == 0)  # pre-roll is silent
    assert ref.abs().max() > 1e-3  # the comparison is not between two silences
    torch.testing.assert_close(got[:, d:], ref, atol=2e-5, rtol=0)


def _stream_through(v: Vocoder, mel: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    stream = v.stream(batch_size=mel.shape[0])
    parts, i, k = [], 0, 0
    while i < mel.shape[-1]:
        parts.append(stream.push(mel[..., i : i + chunks[k % len(chunks)]]))
        i, k = i + chunks[k % len(chunks)], k + 1
    return torch.cat([*parts, stream.flush()], dim=1)


@pytest.mark.parametrize("integrate", [False, True], ids=["frame_phase", "integrated_phase"])
def test_traced_stream_equals_module_stream(
    monkeypatch: pytest.MonkeyPatch, integrate: bool
) -> None:
    from streamcodec.vocoder.traced import TRACE_ENV, TracedGenerator

    v = tiny_vocoder(integrate_phase=integrate)
    with torch.no_grad():  # fp16-exact weights: the trace also holds fbgemm fp16 packs
        for p in v.generator.parameters():
            p.copy_(p.half().float())
    mel = random_mel(90, batch=2)
    chunks = [4, 1, 17, 3, 40]  # both traces: <= 16 frames and longer
    assert isinstance(v.streaming_generator(), TracedGenerator)
    traced = _stream_through(v, mel, chunks)
    monkeypatch.setenv(TRACE_ENV, "0")
    assert v.streaming_generator() is v.generator
    module = _stream_through(v, mel, chunks)
    assert module.abs().max() > 1e-3
    torch.testing.assert_close(traced, module, atol=1e-6, rtol=0)


def test_trace_follows_weight_changes_and_training_mode() -> None:
    v = tiny_vocoder()
    mel = random_mel(20)
    first = v.streaming_generator()
    assert v.streaming_generator() is first  # built once per set of weights
    before = _stream_through(v, mel, [4])
    with torch.no_grad():
        v.generator.head.bias[: v.generator.n_bins] += 0.5
    rebuilt = v.streaming_generator()
    assert rebuilt is not first
    after = _stream_through(v, mel, [4])
    assert (after - before).abs().max() > 1e-3  # the new weights are heard
    d = v.cfg.delay_samples
    torch.testing.assert_close(after[:, d:], v.synthesize(mel), atol=2e-5, rtol=0)
    v.generator.train()
    assert v.streaming_generator() is v.generator  # a generator being trained is not frozen
    v.generator.eval()


def test_failed_trace_streams_through_the_module_and_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from streamcodec.vocoder import traced

    calls = []

    def broken(generator, frames):
        calls.append(frames)
        raise RuntimeError("trace differs from the module")

    monkeypatch.setattr(traced, "_trace", broken)
    v = tiny_vocoder()
    mel = random_mel(12)
    with caplog.at_level("WARNING", logger="streamcodec.vocoder.traced"):
        got = _stream_through(v, mel, [4])
        assert v.streaming_generator() is v.generator
    assert len(calls) == 1  # one failure per set of weights, not one per stream
    assert "trace unavailable" in caplog.text
    d = v.cfg.delay_samples
    torch.testing.assert_close(got[:, d:], v.synthesize(mel), atol=2e-5, rtol=0)


def test_stream_thread_setting_is_restored() -> None:
    from streamcodec.vocoder.streaming import intra_op_threads

    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    v = tiny_vocoder()
    s = v.stream(threads=1)
    s.push(random_mel(3))
    assert torch.get_num_threads() == before


def test_stream_shorter_than_delay() -> None:
    v = tiny_vocoder()
    stream = v.stream()
    got = torch.cat([stream.push(random_mel(1)), stream.flush()], dim=1)
    d = v.cfg.delay_samples
    torch.testing.assert_close(got[:, d:], v.synthesize(random_mel(1)), atol=2e-5, rtol=0)
    assert torch.all(got[:, :d] == 0)


def test_lookahead_value_and_causality() -> None:
    cfg = VocoderConfig()
    assert cfg.delay_samples == 480 and cfg.latency_ms == 40.0  # 30 ms delay + 10 ms hop
    assert VocoderConfig(lookahead_frames=1).delay_samples == 640
    v = tiny_vocoder()
    d = v.cfg.delay_samples
    x = torch.randn(1, 6400) * 0.1
    cut = 3200  # a multiple of the hop
    x2 = x.clone()
    x2[:, cut:] += torch.randn(1, 6400 - cut) * 0.1
    y, y2 = v.copy_synthesis(x), v.copy_synthesis(x2)
    # output before ``cut - delay`` cannot see audio at or after ``cut`` ...
    torch.testing.assert_close(y[:, : cut - d], y2[:, : cut - d], atol=1e-6, rtol=0)
    # ... and the next hop does: the look-ahead is exactly ``delay_samples``
    assert (y[:, cut - d : cut - d + 160] - y2[:, cut - d : cut - d + 160]).abs().max() > 1e-4


def test_codec_round_trip_stream_equals_offline() -> None:
    v = tiny_vocoder()
    codec = MelVocoderCodec(vocoder=v, mel_frames_per_frame=2)
    assert codec.frame_samples == 320 and codec.bits_per_frame == 2560
    assert codec.delay_samples == v.cfg.delay_samples
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(8000 + 77) * 0.1).astype(np.float32)
    frames = codec.encode(x)
    assert len(frames) == -(-x.size // 320) and all(len(f) == codec.frame_bytes for f in frames)
    # streaming encoder (odd push sizes) gives the offline mel, as fp16
    enc = codec.encoder()
    streamed = [f for i in range(0, x.size, 123) for f in enc.push(x[i : i + 123])] + enc.flush()
    assert streamed == frames
    padded = np.zeros(len(frames) * 320, np.float32)
    padded[: x.size] = x
    mel = v.mel(torch.from_numpy(padded)[None])
    got_mel = torch.cat([codec.frame_to_mel(f) for f in frames], dim=-1)
    torch.testing.assert_close(got_mel, mel.half().float())
    y = codec.decode(frames)
    assert y.dtype == np.float32 and y.shape == (padded.size + codec.delay_samples,)
    ref = v.synthesize(got_mel)[0].numpy()
    np.testing.assert_allclose(y[codec.delay_samples :], ref, atol=2e-5)


def test_codec_bad_frames_and_concealment() -> None:
    codec = MelVocoderCodec(vocoder=tiny_vocoder())
    n = codec.frame_samples
    assert n == 640  # default: 4 mel frames, 40 ms
    dec = codec.decoder()
    with pytest.raises(ValueError, match="bytes"):
        dec.push(b"\x00" * 10)
    with pytest.raises(TypeError):
        dec.push("not bytes")  # type: ignore[arg-type]
    nan_frame = np.full((4, 80), np.nan, dtype="<f2").tobytes()
    with pytest.raises(ValueError, match="non-finite"):
        dec.push(nan_frame)
    good = codec.encode(np.zeros(n, np.float32))[0]
    assert dec.push(None).shape == (n,)  # loss before anything arrived
    assert dec.push(good).shape == (n,)
    assert dec.push(None).shape == (n,)
    with pytest.raises(ValueError):
        MelVocoderCodec(vocoder=tiny_vocoder(), mel_frames_per_frame=0)


def test_bad_inputs() -> None:
    v = tiny_vocoder()
    with pytest.raises(ValueError, match="80"):
        v.synthesize(torch.zeros(1, 40, 10))
    with pytest.raises(TypeError):
        v.synthesize(torch.zeros(1, 80, 10, dtype=torch.int64))
    with pytest.raises(TypeError):
        v.synthesize(np.zeros((1, 80, 10)))  # type: ignore[arg-type]
    s = v.stream()
    with pytest.raises(ValueError, match="batch"):
        s.push(random_mel(3, batch=2))
    s.flush()
    with pytest.raises(ValueError, match="closed"):
        s.push(random_mel(3))
    with pytest.raises(ValueError):
        VocoderConfig(dim=0)
    with pytest.raises(ValueError):
        VocoderConfig(lookahead_frames=-1)
    with pytest.raises(ValueError, match="unknown"):
        VocoderConfig.from_dict({"dim": 8, "colour": "red"})


def test_save_load_round_trip(tmp_path: Path) -> None:
    v = tiny_vocoder()
    v.save(tmp_path, {"steps": 1})
    w = Vocoder.from_pretrained(tmp_path)
    assert w.cfg == v.cfg and w.training_info == {"steps": 1}
    mel = random_mel(20)
    torch.testing.assert_close(w.synthesize(mel), v.synthesize(mel), atol=2e-2, rtol=0)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version"):
        Vocoder.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        Vocoder.from_pretrained(tmp_path / "missing")


def test_bundled_weights_load_by_name() -> None:
    codec = streamcodec.load("mel-vocoder")
    assert codec.name == "mel-vocoder" and codec.sample_rate == 16000
    assert codec.delay_samples <= 640  # look-ahead bar: <= 40 ms
    info = codec.vocoder.training_info
    assert info["step"] > 0 and info["audio_hours"] > 0
    x = np.zeros(5 * codec.frame_samples, np.float32)
    y = codec.decode(codec.encode(x))
    assert y.shape == (x.size + codec.delay_samples,) and np.all(np.isfinite(y))


def _tiny_corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    lines = ["path\tduration_s\tspeaker\tlabel_or_transcript\tlicence\tsource"]
    for i in range(4):
        t = np.arange(8000) / 16000
        pcm = 0.3 * np.sin(2 * np.pi * (150 + 50 * i) * t) + 0.01 * rng.standard_normal(8000)
        save_audio(tmp_path / f"a{i}.wav", pcm.astype(np.float32), 16000)
        lines.append(f"a{i}.wav\t0.5\ts{i}\t\tCC0\ttest")
    (tmp_path / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "manifest.tsv"


def _train(argv: list[str]) -> argparse.Namespace:
    parser, module = recipe_parser("vocoder")
    args = parser.parse_args(argv)
    assert module.run(args) == 0
    return args


def test_train_resume_and_init(tmp_path: Path) -> None:
    from streamcodec.training.vocoder_gan import PRESETS, Trainer

    manifest = _tiny_corpus(tmp_path / "data")
    out = tmp_path / "run"
    common = ["--preset", "tiny", "--manifest", str(manifest), "--device", "cpu"]
    common += ["--no-progress", "--no-plot", "--log-every", "1", "--cache-dir", "none"]
    _train(["--out", str(out), "--max-steps", "2", *common])
    ck = torch.load(out / "last.pt", weights_only=True)
    assert json.loads(ck["counters"])["step"] == 2
    _train(["--out", str(out), "--max-steps", "3", *common])  # --resume auto
    ck2 = torch.load(out / "last.pt", weights_only=True)
    counters = json.loads(ck2["counters"])
    assert counters["step"] == 3 and counters["gan_steps"] == 1  # tiny: GAN from step 2
    assert len(counters["history"]) == 2
    assert not torch.equal(ck["gen"]["head.weight"], ck2["gen"]["head.weight"])
    with open(out / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r["mel"])) for r in rows)
    assert rows[-1]["adv"] != ""
    # continue from the shipped (generator-only) files with fresh discriminators
    shipped = Vocoder.from_pretrained(out)
    assert shipped.training_info["step"] == 3
    out2 = tmp_path / "run2"
    _train(["--out", str(out2), "--init", str(out), "--max-steps", "4", *common])
    info = Vocoder.from_pretrained(out2).training_info
    assert info["step"] == 4 and len(info["history"]) == 3
    # the exported discriminators came along: run2 started from run's, not from chance
    from safetensors.torch import load_file

    d1, d2 = (
        load_file(str(out / "discriminators.safetensors")),
        load_file(str(out2 / "discriminators.safetensors")),
    )
    assert d1.keys() == d2.keys() and any(k.startswith("mrd.") for k in d1)
    tr_fresh = Trainer(PRESETS["tiny"], torch.device("cpu"), bf16=False)
    k = next(k for k in d1 if k.startswith("mpd.") and k.endswith("original1"))
    fresh = tr_fresh.mpd.state_dict()[k[4:]].half()
    assert not torch.equal(d1[k], fresh)  # trained, not the init
    tr_fresh.load_discriminators(out / "discriminators.safetensors")
    assert torch.equal(tr_fresh.mpd.state_dict()[k[4:]].half(), d1[k])
    other = Trainer(PRESETS["cpu"], torch.device("cpu"), bf16=False)  # another D config
    assert not other.load_discriminators(out / "discriminators.safetensors")
    # fine-tuning: discriminators first (generator frozen), then both at a lower learning rate
    out3 = tmp_path / "run3"
    argv = ["--out", str(out3), "--init", str(out), "--max-steps", "4", *common]
    _train([*argv, "--disc-warmup-steps", "2", "--lr", "1e-5", "--phase-weight", "2"])
    ck3 = torch.load(out3 / "last.pt", weights_only=True)
    counters = json.loads(ck3["counters"])
    assert counters["step"] == 4  # the warm-up steps do not count as generator steps
    assert counters["history"][-1]["disc_warmup_steps"] == 2
    assert counters["history"][-1]["lr"] == 1e-5
    assert counters["history"][-1]["phase_weight"] == 2.0
    assert json.loads(ck3["config"])["lr_d"] == 1e-5
    with open(out3 / "losses.csv") as fh:
        rows3 = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows3] == [4]
    assert 0.0 < float(rows3[0]["phase"]) < 2.0  # the phase-step loss is on and logged
    # a resumed run keeps the checkpoint's phase weight unless told otherwise
    _train(["--out", str(out3), "--max-steps", "5", *common])
    assert (
        json.loads(torch.load(out3 / "last.pt", weights_only=True)["config"])["phase_weight"] == 2.0
    )
    parser, module = recipe_parser("vocoder")
    with pytest.raises(SystemExit, match="--disc-warmup-steps must be >= 0, got -1"):
        module.run(parser.parse_args([*argv, "--disc-warmup-steps", "-1"]))
    with pytest.raises(SystemExit, match="--lr must be > 0, got 0.0"):
        module.run(parser.parse_args([*argv, "--lr", "0"]))
    with pytest.raises(SystemExit, match="--phase-weight must be >= 0, got -1.0"):
        module.run(parser.parse_args([*argv, "--phase-weight", "-1"]))
    with pytest.raises(SystemExit, match="--fresh-phase needs --integrate-phase and --init"):
        module.run(parser.parse_args([*argv, "--fresh-phase"]))


def test_train_cli_dispatch() -> None:
    assert "vocoder" in RECIPES
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_parser("nope")
    from streamcodec.cli import build_parser

    args = build_parser().parse_args(["train", "vocoder", "--out", "x", "--max-steps", "2"])
    assert args.recipe == "vocoder" and args.recipe_args == ["--out", "x", "--max-steps", "2"]
    parser, _ = recipe_parser("vocoder")
    assert parser.parse_args(args.recipe_args).max_steps == 2


def test_train_step_bf16_autocast_runs() -> None:
    """The mixed-precision path of the GPU preset (bf16 autocast), exercised on CPU."""
    from streamcodec.training.vocoder_gan import PRESETS, Trainer

    tr = Trainer(PRESETS["tiny"], torch.device("cpu"), bf16=True)
    x = torch.randn(2, 4000) * 0.1
    stats = [tr.train_step(x, progress=0.5) for _ in range(3)]  # the tiny preset: GAN at step 2
    assert "adv" in stats[-1] and "adv" not in stats[0]
    assert all(torch.isfinite(v).all() for s in stats for v in s.values())
    assert stats[-1]["mel"] < stats[0]["mel"]  # it fits the one batch it sees


def test_discriminator_only_step_leaves_the_generator_alone() -> None:
    from streamcodec.training.vocoder_gan import PRESETS, Trainer

    tr = Trainer(PRESETS["tiny"], torch.device("cpu"), bf16=False)
    gen = {k: v.clone() for k, v in tr.gen.state_dict().items()}
    ema = {k: v.clone() for k, v in tr.ema.state_dict().items()}
    disc = {k: v.clone() for k, v in tr.mpd.state_dict().items()}
    # progress 0 and step 0: a normal step would not train the discriminators yet
    stats = tr.train_step(torch.randn(2, 4000) * 0.1, progress=0.0, update_generator=False)
    assert set(stats) == {"lr", "loss_d"} and torch.isfinite(stats["loss_d"])
    assert all(torch.equal(v, gen[k]) for k, v in tr.gen.state_dict().items())
    assert all(torch.equal(v, ema[k]) for k, v in tr.ema.state_dict().items())
    assert any(not torch.equal(v, disc[k]) for k, v in tr.mpd.state_dict().items())
    assert tr.step == 0 and tr.gan_steps == 0 and tr.audio_s == 0.0
    assert all(p.grad is None for p in tr.gen.parameters())


def test_learning_rate_warms_up_again_after_init_from_shipped_weights(tmp_path: Path) -> None:
    from streamcodec.training.vocoder_gan import PRESETS, Trainer

    cfg = PRESETS["tiny"]
    src = Trainer(cfg, torch.device("cpu"), bf16=False)
    src.step = 100  # a generator trained for 100 steps, shipped
    Vocoder(src.ema).save(tmp_path / "shipped", src.training_info())
    tr = Trainer(cfg, torch.device("cpu"), bf16=False)
    tr.init_from_shipped(tmp_path / "shipped")
    assert tr.step == 100 and tr.warmup_from == 100
    assert tr.lr_factor(0.0) == pytest.approx(1 / cfg.warmup_steps)  # fresh Adam: warm up
    assert tr.lr_factor(0.0, warm_up=False) == 1.0  # discriminator-only warm-up steps
    stats = tr.train_step(torch.randn(2, 4000) * 0.1, 0.0, update_generator=False)
    assert float(stats["lr"]) == pytest.approx(cfg.lr_g)


def test_gan_starts_by_step_or_by_progress() -> None:
    from streamcodec.training.vocoder_gan import PRESETS, Trainer

    cfg = replace(PRESETS["tiny"], gan_start_step=10**6, gan_start_progress=0.5)
    tr = Trainer(cfg, torch.device("cpu"), bf16=False)
    x = torch.randn(2, 4000) * 0.1
    assert "adv" not in tr.train_step(x, progress=0.4)
    assert "adv" in tr.train_step(x, progress=0.6)
    assert tr.gan_steps == 1 and tr.step == 2
