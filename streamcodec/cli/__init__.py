"""The ``streamcodec`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code).
Modules are discovered automatically, so adding a command means adding a file
(``webrtc_demo.py`` gives ``webrtc-demo``). When the command line names a
sub-command, only its module is imported, so a light command does not pay for
the heavy imports (torch, aiortc) of the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys


def command_modules() -> dict[str, str]:
    """Sub-command name -> module name, for every command module of this package."""
    names = sorted(i.name for i in pkgutil.iter_modules(__path__) if not i.name.startswith("_"))
    return {name.replace("_", "-"): name for name in names}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (``only``: a command name) one with just that sub-command."""
    parser = argparse.ArgumentParser(
        prog="streamcodec", description="Sub-kbps streaming voice codec SDK."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, name in command_modules().items():
        if only is not None and command != only:
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
    return parser


def _named_command(argv: list[str]) -> str | None:
    """The sub-command of ``argv`` when it is the first argument that is not an option."""
    for arg in argv:
        if arg in ("-v", "--verbose"):
            continue
        return arg if arg in command_modules() else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_named_command(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # chatty third-party loggers would break progress bars
        for name in ("faster_whisper", "numba", "matplotlib"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"streamcodec {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
