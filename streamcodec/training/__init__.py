"""Training recipes and their data pipeline (not needed for inference)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable


def recipe_main(
    module: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """``python -m streamcodec.training.<recipe> ...``: the same as ``streamcodec train
    <recipe>``, without the rest of the CLI (whose other commands import packages a bare
    GPU machine may lack). ``module``: the recipe's full module name, for the usage line."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))
