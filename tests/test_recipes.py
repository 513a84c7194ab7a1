"""Training recipes as files: every documented recipe loads into the training objects, flags
override a recipe, the recipe a run used is saved beside the model, and a bad recipe is one line."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from splade_os.cli import cli
from splade_os.training.recipes import read_recipe, recipe_text

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Runs `train` without training: the recipe and arguments it would train with, and its model folder."""
    seen = {}

    def run(recipe, args, cluster=None, show_progress=True):
        seen.update(recipe=recipe, args=args)
        folder = tmp_path / "final"
        folder.mkdir(exist_ok=True)
        (folder / "README.md").write_text("# a model card\n", encoding="utf-8")
        return SimpleNamespace(steps=1, pairs=2, seconds=0.0, losses=[], validation=None, model_dir=folder)

    monkeypatch.setattr("splade_os.training.trainer.run", run)
    monkeypatch.setattr("splade_os.cli.options.ClusterSpec.connect", lambda self: None)
    return seen


def test_the_documented_recipes_are_files():
    assert {p.name for p in RECIPES} >= {"cranfield-teacher.toml", "self-supervised.toml", "bm25-negatives.toml"}
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8") + (ROOT / "README.md").read_text("utf-8")
    for path in RECIPES:
        assert f"recipes/{path.name}" in text, f"{path.name} is not in the docs"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_each_recipe_builds_the_training_objects_and_is_saved_back(path, captured, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["-q", "train", "--recipe", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recipe, args = captured["recipe"], captured["args"]
    tables = read_recipe(path)
    assert str(recipe.beir) == tables["data"]["beir"]
    assert str(args.output_dir) == tables["trainer"]["output"]
    assert args.max_seq_length == tables["trainer"].get("max-seq-length")
    if "teacher" in tables:
        assert recipe.teacher.model == tables["teacher"]["teacher"] and recipe.negatives is None
        assert recipe.teacher.candidates == tables["teacher"]["teacher-candidates"]
    if "negatives" in tables:
        assert recipe.negatives.method == tables["negatives"]["hard-negatives"]
    # What the run saved beside the model is the recipe again (with the defaults spelled out).
    saved = read_recipe(tmp_path / "final" / "recipe.toml")
    for table, values in tables.items():
        for key, value in values.items():
            assert saved[table][key] == value, (table, key)
    assert "## splade-os recipe" in (tmp_path / "final" / "README.md").read_text(encoding="utf-8")
    # The saved recipe trains the same run.
    again = CliRunner().invoke(cli, ["-q", "train", "--recipe", str(tmp_path / "final" / "recipe.toml")])
    assert again.exit_code == 0 and captured["args"] == args and captured["recipe"] == recipe


def test_flags_override_the_recipe(captured, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["-q", "train", "--recipe", "recipes/cranfield-teacher.toml", "--seed", "11",
                                      "--epochs", "1", "-o", "runs/other"])
    assert result.exit_code == 0, result.output
    args = captured["args"]
    assert (args.seed, args.epochs, str(args.output_dir), args.learning_rate) == (11, 1.0, "runs/other", 1e-4)


def test_a_bad_recipe_is_one_line(tmp_path):
    cases = {"[trainer]\nlrr = 1\n": "[trainer] has no option 'lrr'",
             "[data]\nlr = 1e-4\n": "[data] has no option 'lr'",
             "[model]\nx = 1\n": "[model] is not a recipe table",
             "[trainer\n": "not a TOML recipe"}
    for text, reason in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(text, encoding="utf-8")
        result = CliRunner().invoke(cli, ["-q", "train", "--recipe", str(path)])
        assert result.exit_code == 2 and reason in result.output, (text, result.output)


def test_recipe_text_reads_back(tmp_path):
    tables = {"data": {"beir": "a \"quoted\" path \u00e9", "negative-column": ["n1", "n2"]},
              "trainer": {"lr": 1e-4, "epochs": 2.0, "seed": 7, "force": True}}
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_text(tables, "a comment"), encoding="utf-8")
    assert read_recipe(path) == tables
