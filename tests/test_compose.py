"""docker-compose.yml works: `up` on the images built here, `splade-os ingest` and `search` against
it, `down -v`; on both engines. Runs where a Docker engine answers (deselected elsewhere, said in
the summary); CI starts one."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def _compose() -> list:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_cluster/health", timeout=5) as answer:
                if json.load(answer)["status"] in ("green", "yellow"):
                    return
        except OSError:
            pass
        time.sleep(2)
    raise AssertionError(f"{url} did not become healthy in {timeout:.0f} s")


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_compose_up_ingest_search_down(engine, sample_dir, tmp_path):
    from splade_os.cli import cli
    from splade_os.node.image import build_image

    port = _free_port()
    env = {**os.environ, f"SPLADE_OS_{engine.upper()}_IMAGE": build_image(engine, show_progress=False),
           f"SPLADE_OS_{engine.upper()}_PORT": str(port)}
    compose = [*_compose(), "-p", f"splade-os-test-{engine}", "-f", str(ROOT / "docker-compose.yml")]
    if engine == "elasticsearch":
        compose += ["--profile", "elasticsearch"]
    url = f"http://127.0.0.1:{port}"
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join((sample_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines(True)[:40]),
                      encoding="utf-8")
    up = subprocess.run([*compose, "up", "-d", engine], env=env, capture_output=True, text=True)
    try:
        assert up.returncode == 0, up.stderr[-1500:]
        _healthy(url)
        runner = CliRunner()
        ingested = runner.invoke(cli, ["-q", "ingest", str(corpus), "--index", "compose", "--url", url,
                                       "--dead-letter", str(tmp_path / "dead.jsonl")])
        assert ingested.exit_code == 0 and "indexed 40" in ingested.output, ingested.output
        found = runner.invoke(cli, ["-q", "search", "boundary layer", "--index", "compose", "--url", url, "--json"])
        assert found.exit_code == 0 and json.loads(found.output)[0]["score"] > 0, found.output
    finally:
        down = subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    with pytest.raises(OSError):  # down: nothing answers there any more
        urllib.request.urlopen(f"{url}/_cluster/health", timeout=3)


def test_the_documented_testcontainers_fixture_runs(tmp_path):
    """docs/nodes.md's fixture example, as a user's own test module, green."""
    import re
    import sys

    text = (ROOT / "docs" / "nodes.md").read_text(encoding="utf-8")
    section = text.split("**Your own tests**", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[:1]
    (tmp_path / "test_mine.py").write_text(code, encoding="utf-8")
    lines = [{"_id": "boots-1", "title": "Waterproof hiking boots", "text": "Leather boots for wet trails."},
             {"_id": "sandals-2", "title": "Beach sandals", "text": "Light sandals for the summer."}]
    (tmp_path / "products.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    env = {**os.environ, "TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_CONNECTION_MODE": "docker_host"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
