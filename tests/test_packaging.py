"""Packaging: every package folder is listed in pyproject.toml; bundled data is present."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listed() -> set[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(cfg["tool"]["setuptools"]["packages"])


def _on_disk() -> set[str]:
    found = set()
    for init in (ROOT / "streamcodec").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    for init in (ROOT / "kernels").rglob("__init__.py"):
        found.add(".".join(("streamcodec",) + init.parent.relative_to(ROOT).parts))
    return found


def test_every_package_folder_is_listed_in_pyproject():
    assert _on_disk() == _listed()


def test_kernels_import_as_streamcodec_kernels():
    import streamcodec.kernels

    assert Path(streamcodec.kernels.__file__).resolve().parent == ROOT / "kernels"


def test_bundled_clips_and_attribution():
    from streamcodec import assets

    assert assets.demo_clip().exists()
    assert (assets.speech_dir() / "manifest.tsv").exists()
    text = (assets.speech_dir().parent / "ATTRIBUTION.md").read_text()
    assert "CC BY 4.0" in text and "LibriSpeech" in text


def test_light_commands_do_not_import_torch_or_aiortc():
    """`streamcodec codecs` imports only its own module, not every command's heavy deps."""
    import subprocess
    import sys

    code = (
        "import sys; from streamcodec.cli import main; main(['codecs']); "
        "print('HEAVY', sorted(m for m in ('torch', 'aiortc') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "codec2-700c" in out.stdout
    assert "HEAVY []" in out.stdout, out.stdout


def test_every_command_module_registers_its_command():
    from streamcodec.cli import build_parser, command_modules

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(command_modules())
