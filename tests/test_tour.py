"""The README's training tour, run as written, in order, on a fresh clone: each command must leave
what the next one needs.

The commands are read from the README itself (its first `ingest`, then the training block), so
the tour cannot drift from what is tested. Two things are made small to keep the test in CI's
time: the Cranfield folder of the "clone" holds the first `DOCS` documents (the queries and
judgments whole), and `train` stops after `STEPS` steps with `--force`, since the validation gate
refuses a model trained that little (the recipe's full run passed it: README, benchmarks/results).
`train` also gets `--json`, so its summary is checked on a real run.
"""

import json
import re
import shlex
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from splade_os.cli import cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DOCS = 60
STEPS = 2
SMALL_RUN = ["--max-steps", str(STEPS), "--force", "--validation-queries", "10", "--json"]


def tour_commands() -> list:
    """The README's first `ingest` of Cranfield, then every command of its training block."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", readme, flags=re.S)
    lines = [[shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("splade-os ")]
             for block in blocks]
    first_ingest = next(c for block in lines for c in block if c[1] == "ingest" and "connector/data/cranfield" in c[2])
    training = next(block for block in lines if any(c[1] == "train" for c in block))
    return [first_ingest, *training]


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """A working folder laid out as a fresh clone (recipes/ and a small connector/data/cranfield)."""
    source, data = REPO / "connector" / "data" / "cranfield", tmp_path / "connector" / "data" / "cranfield"
    (data / "qrels").mkdir(parents=True)
    lines = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:DOCS]
    (data / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")
    for name in ("queries.jsonl", "qrels/test.tsv"):
        (data / name).write_text((source / name).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_training_tour_runs_in_order(opensearch_url, clone):
    from splade_os.cluster import connect

    commands = tour_commands()
    assert [c[1] for c in commands] == ["ingest", "train", "push", "ingest", "eval"], commands
    cluster = connect(opensearch_url)
    indexes = [c[c.index("--index") + 1] for c in commands if "--index" in c]
    for name in indexes:  # a rerun against the same cluster starts from where a fresh clone would
        cluster.request("DELETE", f"/{name}", params={"ignore_unavailable": "true"})
    env = {"SPLADE_OS_URL": opensearch_url, "SPLADE_OS_NO_LOCAL": "1"}

    def run(args):
        started = time.perf_counter()
        result = CliRunner().invoke(cli, ["-q", *args[1:]], env=env, catch_exceptions=False)
        print(f"{time.perf_counter() - started:6.1f} s  {shlex.join(args)}")  # shown with -s, or on failure
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    ingest, train, push, ingest_trained, evaluate = commands
    out = run(ingest)
    assert f"indexed {DOCS}, rejected 0" in out and cluster.index("cran").count() == DOCS

    summary = json.loads(run(train + SMALL_RUN))  # the recipe mines the index the first ingest made
    final = Path(push[2])
    assert (summary["command"], summary["steps"], summary["model"], summary["index"]) == ("train", STEPS, str(final),
                                                                                          "cran")
    assert summary["pairs"] > 0 and summary["mining"]["kept"] > 0 and summary["validation"]["queries"] > 0
    assert (final / "modules.json").is_file() and (final / "recipe.toml").is_file()
    assert "seed = 7" in (final / "recipe.toml").read_text()  # the recipe's settings, as measured

    out = run(push)
    pushed = re.search(r"pushed (\S+@\d+):", out).group(1)
    name = push[push.index("--name") + 1]
    assert pushed.startswith(f"{name}@")
    # The README's `@1` is the first push to a fresh cluster's registry; a rerun pushes the next one.
    ingest_trained = [pushed if arg == f"{name}@1" else arg for arg in ingest_trained]
    assert pushed in ingest_trained

    out = run(ingest_trained)
    trained_index = cluster.index(ingest_trained[ingest_trained.index("--index") + 1])
    assert f"indexed {DOCS}, rejected 0" in out and trained_index.count() == DOCS
    assert trained_index.model["name"] == name and trained_index.model["source"].endswith(pushed)

    out = run(evaluate + ["--json", "--results-dir", str(clone / "eval")])
    record = json.loads(out)
    assert record["index"] == trained_index.name and record["queries"] == 225
    assert 0.0 < record["metrics"]["ndcg@10"] < 1.0  # 60 of 1400 documents: small, but found
