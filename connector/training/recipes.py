"""Training recipes as files: a TOML file holds a run's settings, so a run is reproducible from it.

A recipe has one table per part of a run, mirroring the training dataclasses: `[data]` (where
pairs, the starting model and validation come from: `Recipe`), `[negatives]` (`MiningOptions`),
`[teacher]` (`TeacherOptions`) and `[trainer]` (`TrainArgs`). Keys are `splade-os train`'s
options without their dashes (`max-seq-length = 256`); `splade-os train --recipe FILE` reads
them, and any option given on the command line overrides the file. The recipe a run used is
saved beside the trained model (`recipe.toml`) and in its model card.

Example (recipes/cranfield-teacher.toml):

    [data]
    beir = "connector/data/cranfield"
    pairs = "lead+ict"

    [trainer]
    epochs = 2
    lr = 1e-4
"""

import json
import math
import sys
from pathlib import Path
from typing import Dict

from splade_os.common.errors import InputError

SECTIONS = ("data", "negatives", "teacher", "trainer")


def read_recipe(path) -> Dict[str, dict]:
    """{table: {key: value}} of a recipe file.

    Raises:
        InputError: the file is missing, not TOML, or has a table that is not one of `SECTIONS`.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        recipe = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read the recipe ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not a TOML recipe ({e})") from None
    for table, values in recipe.items():
        if table not in SECTIONS or not isinstance(values, dict):
            raise InputError(f"{path}: [{table}] is not a recipe table; expected {', '.join(SECTIONS)}")
    return recipe


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf" if value < 0 else "nan")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def recipe_text(recipe: Dict[str, dict], comment: str = "") -> str:
    """A recipe as TOML text (values None are left out: they are the defaults)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    for table in SECTIONS:
        values = {key: value for key, value in recipe.get(table, {}).items() if value is not None}
        if values:
            lines += ["", f"[{table}]"] + [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def save_recipe(model_dir, recipe: Dict[str, dict]) -> Path:
    """Write the recipe beside a trained model (`recipe.toml`) and add it to the model card."""
    folder = Path(model_dir)
    text = recipe_text(recipe, "The recipe this model was trained with: splade-os train --recipe recipe.toml")
    path = folder / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    card = folder / "README.md"
    before = card.read_text(encoding="utf-8") if card.exists() else ""
    card.write_text(before + "\n\n## splade-os recipe\n\n```toml\n" + text + "```\n", encoding="utf-8")
    return path
