"""``streamcodec codecs``: list the registered codecs."""

from __future__ import annotations

import argparse

from streamcodec.registry import describe, is_available, list_codecs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("codecs", help="list the codecs streamcodec.load() accepts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in list_codecs():
        note = "" if is_available(name) else "  [no bundled weights yet: load(name, weights=DIR)]"
        print(f"{name:14s} {describe(name)}{note}")
    return 0
