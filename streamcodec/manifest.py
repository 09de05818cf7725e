"""Read the corpus manifests (``manifest.tsv``: path, duration_s, speaker, label_or_transcript,
licence, source; tab-separated, one header line, no quoting).

A manifest path is relative either to the directory holding the manifest or to
the corpus ``data/`` root (as in ``../shared/data``, where paths start with
``dev/speech/…``); the root is found by walking up from the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("path", "duration_s", "speaker", "label_or_transcript", "licence", "source")


@dataclass(frozen=True)
class ManifestEntry:
    path: Path  # absolute path of the audio file
    rel_path: str  # as written in the manifest
    duration_s: float
    speaker: str
    label: str  # transcript (speech), word/digit (probes) or description
    licence: str
    source: str


def _resolve(rel: str, manifest_dir: Path) -> Path:
    for base in (manifest_dir, *manifest_dir.parents):
        candidate = base / rel
        if candidate.exists():
            return candidate.resolve()
    raise FileNotFoundError(
        f"manifest entry {rel!r} not found relative to {manifest_dir} or any parent directory"
    )


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Parse ``path`` (a ``manifest.tsv`` or a directory holding one) into entries."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.tsv"
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"manifest {path} is empty")
    header = lines[0].split("\t")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"manifest {path} lacks columns {missing}; header is {header}")
    idx = {c: header.index(c) for c in COLUMNS}
    entries = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < len(header):
            cells += [""] * (len(header) - len(cells))
        rel = cells[idx["path"]]
        try:
            duration = float(cells[idx["duration_s"]] or "nan")
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: duration_s {cells[idx['duration_s']]!r} is not a number"
            ) from None
        entries.append(
            ManifestEntry(
                path=_resolve(rel, path.parent),
                rel_path=rel,
                duration_s=duration,
                speaker=cells[idx["speaker"]],
                label=cells[idx["label_or_transcript"]],
                licence=cells[idx["licence"]],
                source=cells[idx["source"]],
            )
        )
    return entries
