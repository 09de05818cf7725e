"""Evaluation harness: metrics, alignment, spectral distances and reports.

Kept import-light (no torch) so the CLI can describe the metrics cheaply.
"""

#: every metric the harness knows, in report order
ALL_METRICS = (
    "mel_distance",
    "stft_distance",
    "pesq_wb",
    "stoi",
    "visqol",
    "dnsmos",
    "wer",
    "spk_sim",
)
#: metrics that make sense only for speech
SPEECH_ONLY = ("wer", "spk_sim")
