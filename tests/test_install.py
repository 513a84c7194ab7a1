"""A real install: the wheel carries what the package reads, the base install has no torch and
still searches, and a full install ingests, all with the repository off the path."""

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from test_code_shape import ORDER

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _run(args, cwd, check=True, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _venv(folder: Path) -> Path:
    _run([sys.executable, "-m", "venv", folder], cwd=folder.parent)
    return folder / "bin"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", ROOT, "-w", out], cwd=out)
    (path,) = out.glob("splade_os-*.whl")
    return path


@pytest.fixture(scope="module")
def indexed(opensearch_url, default_model, sample_dir, tmp_path_factory):
    """An index of 50 Cranfield documents made with the full install (this test run's)."""
    from splade_os import connect, ingest
    from splade_os.ingest import IngestOptions

    folder = tmp_path_factory.mktemp("corpus")
    corpus = folder / "c50.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:50]))
    ingest(connect(opensearch_url), corpus, "install-check", default_model,
           options=IngestOptions(dead_letter=folder / "dead.jsonl"), show_progress=False)
    return corpus


def test_wheel_carries_templates_and_sample(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("splade_os/mappings/index.json", "splade_os/pipelines/ingest.json", "splade_os/cli/main.py",
                   *(f"splade_os/{package}/__init__.py" for package in ORDER),
                   "splade_os/data/cranfield/corpus.jsonl", "splade_os/data/cranfield/qrels/test.tsv"):
        assert needed in names, needed
    assert not any(name.startswith(("connector/", "tests/", "mappings/", "pipelines/")) for name in names)


def test_base_install_has_no_torch_and_searches(wheel, indexed, opensearch_url, default_model, tmp_path):
    bin_dir = _venv(tmp_path / "base")
    _run([bin_dir / "python", "-m", "pip", "install", "-q", wheel], cwd=tmp_path)
    assert _run([bin_dir / "python", "-c", "import torch"], cwd=tmp_path, check=False).returncode != 0
    where = _run([bin_dir / "python", "-c", "import sys, splade_os; print(splade_os.__file__); "
                  "assert 'torch' not in sys.modules"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(tmp_path / "base"))

    cli = bin_dir / "splade-os"
    hits = json.loads(_run([cli, "-q", "search", "boundary layer", "--index", "install-check", "--url", opensearch_url,
                            "--json", "-k", "3"], cwd=tmp_path).stdout)
    assert len(hits) == 3 and hits[0]["score"] > 0
    body = json.loads(_run([cli, "-q", "query", "boundary layer", "--index", "install-check", "--url", opensearch_url],
                           cwd=tmp_path).stdout)
    assert body["query"]["bool"]["should"]
    # A model folder is enough for the query side: no torch needed to read it.
    body = json.loads(_run([cli, "-q", "query", "wing", "--model", default_model.root], cwd=tmp_path).stdout)
    assert body["query"]["bool"]["should"][0]["rank_feature"]["field"] == "splade.wing"
    # What needs an extra says which one, on one line.
    result = _run([cli, "-q", "ingest", indexed, "--index", "x", "--url", opensearch_url], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: document encoding needs the 'encode' extra (torch, transformers, sentence_transformers, scipy, "
        "ir_measures not installed): pip install 'splade-os[encode]'"]


def test_full_install_from_the_wheel_ingests(wheel, indexed, opensearch_url, tmp_path):
    bin_dir = _venv(tmp_path / "full")
    # The heavy dependencies come from this test run's environment (a .pth line, not its
    # site-packages' own .pth files, so the editable install of the repository stays out).
    purelib = _run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=tmp_path).stdout.strip()
    Path(purelib, "test-run-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", wheel], cwd=tmp_path)
    where = _run([bin_dir / "python", "-c", "import splade_os; print(splade_os.__file__)"], cwd=tmp_path).stdout
    assert where.startswith(str(tmp_path / "full"))
    cli = bin_dir / "splade-os"
    assert "created index 'wheel-full'" in _run([cli, "-q", "init", "--index", "wheel-full", "--url", opensearch_url],
                                                cwd=tmp_path).stdout
    out = _run([cli, "-q", "ingest", indexed, "--index", "wheel-full", "--url", opensearch_url,
                "--dead-letter", tmp_path / "dead.jsonl"], cwd=tmp_path).stdout
    assert "indexed 50, rejected 0" in out
    hits = json.loads(_run([cli, "-q", "search", "boundary layer", "--index", "wheel-full", "--url", opensearch_url,
                            "--json"], cwd=tmp_path).stdout)
    assert len(hits) == 10
