"""``streamcodec train RECIPE [options]``: run a training recipe.

Recipes are listed in :data:`RECIPES`, a table ``name -> (module, help)``. A recipe
module (``streamcodec.training.<something>``) exposes two functions:

* ``add_arguments(parser: argparse.ArgumentParser) -> None`` adds its options;
* ``run(args: argparse.Namespace) -> int`` trains and returns an exit code.

To add a recipe, add one line to ``RECIPES`` (or call :func:`register_recipe`).
Only the chosen recipe's module is imported, so ``streamcodec train --help`` and
the other CLI commands stay fast. ``streamcodec train RECIPE --help`` lists the
recipe's own options.
"""

from __future__ import annotations

import argparse
import importlib

RECIPES: dict[str, tuple[str, str]] = {
    "vocoder": ("streamcodec.training.vocoder", "streaming mel vocoder (GAN, iSTFT head)"),
    "vocoder-pairs": (
        "streamcodec.training.vocoder_pairs",
        "decoded-mel pairs of a voice codec, for fine-tuning the vocoder",
    ),
    "mae": ("streamcodec.training.mae", "semantic encoder: masked-autoencoder pretraining"),
    "kmeans": ("streamcodec.training.kmeans", "semantic codebooks: k-means on encoder features"),
    "codec": ("streamcodec.training.codec", "voice codec: acoustic tokens + flow decoder"),
}


def register_recipe(name: str, module: str, help_text: str) -> None:
    """Add a recipe ``name`` implemented by ``module`` (``add_arguments`` + ``run``)."""
    if name in RECIPES and RECIPES[name][0] != module:
        raise ValueError(f"recipe {name!r} is already registered to {RECIPES[name][0]}")
    RECIPES[name] = (module, help_text)


def register(subparsers: argparse._SubParsersAction) -> None:
    lines = "\n".join(f"  {n:10s} {h}" for n, (_, h) in sorted(RECIPES.items()))
    p = subparsers.add_parser(
        "train",
        help="train a model (recipes: " + ", ".join(sorted(RECIPES)) + ")",
        description=f"Run a training recipe.\n\nrecipes:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", choices=sorted(RECIPES), metavar="RECIPE")
    p.add_argument("recipe_args", nargs=argparse.REMAINDER, help="options of the recipe")
    p.set_defaults(func=run)


def recipe_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The argument parser of recipe ``name`` and its module."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    module_name, help_text = RECIPES[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"streamcodec train {name}", description=help_text)
    module.add_arguments(parser)
    return parser, module


def run(args: argparse.Namespace) -> int:
    parser, module = recipe_parser(args.recipe)
    recipe_args = parser.parse_args(args.recipe_args)
    return int(module.run(recipe_args) or 0)
