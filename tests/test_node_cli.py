"""`splade-os node start|status|stop|fetch --engine elasticsearch` end to end, on a cache of its own.

The test cache borrows the distributions of the real cache (a symlinked `dist/`), so nothing is
downloaded, and a background node started here cannot touch one the user runs.
"""

import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from splade_os.common.cache import cache_dir
from splade_os.cli import cli
from splade_os.node import ensure_distribution, running_url, stop_background

pytestmark = pytest.mark.node

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def own_cache(monkeypatch):
    ensure_distribution("elasticsearch", show_progress=False)  # into the real cache, once
    real = cache_dir()
    # Outside pytest's private temp folder and readable by all: as root the node runs as `nobody`.
    folder = Path(tempfile.mkdtemp(prefix="splade-os-cli-cache-", dir="/var/tmp"))
    folder.chmod(0o755)
    (folder / "dist").symlink_to(real / "dist")
    monkeypatch.setenv("SPLADE_OS_CACHE", str(folder))
    yield folder
    stop_background("elasticsearch")
    shutil.rmtree(folder, ignore_errors=True)


def run(*args):
    return CliRunner().invoke(cli, list(args), env={"SPLADE_OS_CACHE": os.environ["SPLADE_OS_CACHE"]},
                              catch_exceptions=False)


def test_node_commands_for_elasticsearch(own_cache):
    assert run("-q", "node", "status", "--engine", "elasticsearch").exit_code == 1

    started = run("-q", "node", "start", "--engine", "elasticsearch")
    assert started.exit_code == 0, started.output
    url = started.output.strip()
    with _OPENER.open(url + "/_cluster/health", timeout=30) as response:
        assert response.headers["X-elastic-product"] == "Elasticsearch"
        assert json.load(response)["status"] in ("green", "yellow")
    assert (own_cache / "node" / "elasticsearch" / "cluster-1" / "node-0" / "data").is_dir()  # kept for next time

    status = run("-q", "node", "status", "--engine", "elasticsearch")
    assert (status.exit_code, status.output) == (0, url + "\n")
    assert run("-q", "node", "status").output == "no local opensearch node is running\n"  # engines apart
    assert run("-q", "node", "start", "--engine", "elasticsearch").output == url + "\n"  # reused
    other = run("-q", "node", "start", "--engine", "elasticsearch", "--nodes", "2")
    assert other.exit_code == 1 and "cluster of 1 node(s) is running" in other.output

    # With no --url, a command uses (here: reuses) the local node of its --engine.
    search = run("search", "lift", "--index", "nope", "--engine", "elasticsearch")
    assert search.exit_code == 1 and f"no cluster configured (--url, SPLADE_OS_URL, --cloud-id): using the local elasticsearch node at {url}" in search.output, search.output
    assert "index 'nope' does not exist" in search.output, search.output

    stopped = run("-q", "node", "stop", "--engine", "elasticsearch")
    assert (stopped.exit_code, stopped.output) == (0, "stopped\n")
    assert running_url("elasticsearch") is None
    assert run("-q", "node", "status", "--engine", "elasticsearch").output == (
        "no local elasticsearch node is running\n")
    assert run("-q", "node", "stop", "--engine", "elasticsearch").output == "no local elasticsearch node was running\n"


def test_node_fetch_prints_the_home(own_cache):
    fetched = run("-q", "node", "fetch", "--engine", "elasticsearch")
    assert fetched.exit_code == 0
    assert Path(fetched.output.strip()) == own_cache / "dist" / "elasticsearch-8.19.21"
