"""No surprises and observable runs: the local node only when no cluster is named (and never under
SPLADE_OS_NO_LOCAL=1), X-Opaque-Id on every request, JSON log lines and JSON run summaries."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from splade_os.cli import cli
from splade_os.common import progress

NO_URL = {"SPLADE_OS_URL": None, "OPENSEARCH_URL": None}


def run(*args, env=None):
    try:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    finally:
        progress.log_format("text")  # the next library call in this process writes text again


def test_no_local_node_under_splade_os_no_local(monkeypatch):
    import splade_os.node

    monkeypatch.setattr(splade_os.node, "start_background", lambda **_: pytest.fail("a local node was started"))
    result = run("search", "lift", "--index", "docs", env={**NO_URL, "SPLADE_OS_NO_LOCAL": "1"})
    assert result.exit_code == 2
    assert result.output == ("Error: no cluster is configured and SPLADE_OS_NO_LOCAL is set: give --url or "
                             "SPLADE_OS_URL (or --cloud-id)\n")

    result = run("--log-format", "json", "ingest", __file__, "--index", "docs",
                 env={**NO_URL, "SPLADE_OS_NO_LOCAL": "1"})
    assert result.exit_code == 2 and result.stdout == ""
    line = json.loads(result.stderr)
    assert line["level"] == "error" and line["command"] == "ingest" and "SPLADE_OS_NO_LOCAL" in line["message"]


def test_the_local_node_is_said_even_under_quiet(monkeypatch):
    import splade_os.node

    started = []
    monkeypatch.setattr(splade_os.node, "start_background", lambda **kw: started.append(kw) or "http://127.0.0.1:9")
    result = run("-q", "search", "lift", "--index", "docs", env={**NO_URL, "SPLADE_OS_NO_LOCAL": "0"})
    assert started and result.exit_code == 1  # nothing answers there: the command still fails in one line
    assert result.stderr.splitlines()[0] == ("Note: no cluster configured (--url, SPLADE_OS_URL, --cloud-id): using the local "
                                             "opensearch node at http://127.0.0.1:9")
    started.clear()
    result = run("-q", "search", "lift", "--index", "docs", "--url", "http://127.0.0.1:9", env=NO_URL)
    assert not started and "Note:" not in result.output  # a named cluster: no local node, no notice


class _Recorder(BaseHTTPRequestHandler):
    """A cluster that answers its health and nothing else (404), and records each request's X-Opaque-Id."""

    seen: list = []
    elastic = False  # answer as Elasticsearch does (its client checks the product header of every answer)

    def _answer(self):
        self.seen.append((self.command, self.path.split("?")[0], self.headers.get("X-Opaque-Id")))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        found = self.path.startswith("/_cluster/health")
        body = json.dumps({"status": "green"} if found else
                          {"error": {"type": "index_not_found_exception", "reason": "no such index"},
                           "status": 404}).encode()
        self.send_response(200 if found else 404)
        self.send_header("content-type", "application/json")
        if self.elastic:
            self.send_header("x-elastic-product", "Elasticsearch")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(params=["opensearch", "elasticsearch"])
def recorder(request):
    """(URL of a recording cluster, the list of (method, path, X-Opaque-Id) it saw), answering as
    each engine in turn (each engine's Python client sends the requests)."""
    _Recorder.seen, _Recorder.elastic = [], request.param == "elasticsearch"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_every_request_carries_the_opaque_id(recorder):
    from splade_os.cluster import connect

    url, seen = recorder
    cluster = connect(url, opaque_id="my-app/nightly")
    assert cluster.engine.name == ("elasticsearch" if _Recorder.elastic else "opensearch")
    assert cluster.exists("/docs") is False
    cluster.request("GET", "/_cluster/health", opaque_id="my-app/one-call")
    cluster.with_opaque_id("my-app/other").request("GET", "/_cluster/health")
    assert cluster.opaque_id == "my-app/nightly"  # the handle given another id is a new one
    assert [id for _, _, id in seen] == ["my-app/nightly"] * (len(seen) - 2) + ["my-app/one-call", "my-app/other"]
    assert ("HEAD", "/docs", "my-app/nightly") in seen and len(seen) >= 3  # the engine probe, then ours

    seen.clear()
    assert connect(url).request("GET", "/_cluster/health") and {id for _, _, id in seen} == {None}

    seen.clear()
    result = run("-q", "search", "lift", "--index", "docs", "--url", url, env={"SPLADE_OS_RUN_ID": "run-17"})
    assert result.exit_code == 1 and "index 'docs' does not exist" in result.output
    assert seen and {id for _, _, id in seen} == {"splade-os/search/run-17"}
    seen.clear()
    run("-q", "search", "lift", "--index", "docs", "--url", url)
    ids = {id for _, _, id in seen}
    assert len(ids) == 1 and ids.pop().startswith("splade-os/search/")  # a run id of its own


def test_json_log_lines(recorder):
    url, _ = recorder
    result = run("--log-format", "json", "search", "lift", "--index", "docs", "--url", url,
                 env={"SPLADE_OS_RUN_ID": "run-18"})
    assert result.exit_code == 1 and result.stdout == ""
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines[-1]["level"] == "error" and "does not exist" in lines[-1]["message"]
    assert all(line.keys() >= {"time", "level", "message", "command", "run_id"} for line in lines)
    assert {(line["command"], line["run_id"]) for line in lines} == {("search", "run-18")}


@pytest.mark.slow
def test_ingest_and_reindex_summaries(opensearch_url, sample_dir, tmp_path):
    from splade_os.cluster import connect

    connect(opensearch_url).request("DELETE", "/summary-a,summary-b", params={"ignore_unavailable": "true"})  # reruns
    corpus = tmp_path / "twenty.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:20]), encoding="utf-8")
    result = run("--log-format", "json", "ingest", str(corpus), "--index", "summary-a", "--url", opensearch_url,
                 "--json", env={"SPLADE_OS_RUN_ID": "run-19"})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["command"] == "ingest" and summary["run_id"] == "run-19"
    assert (summary["index"], summary["indexed"], summary["rejected"], summary["count_after"]) == (
        "summary-a", 20, 0, 20)
    assert summary["model"]["name"] == "splade-os-default" and summary["seconds"] > 0
    assert summary["docs_per_second"] == pytest.approx(20 / summary["seconds"], rel=0.01)
    assert all(json.loads(line)["run_id"] == "run-19" for line in result.stderr.splitlines())  # no bars, JSON only

    result = run("-q", "reindex", "summary-a", "summary-b", "--url", opensearch_url, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["command"], summary["source"], summary["index"], summary["documents"]) == (
        "reindex", "summary-a", "summary-b", 20)
    assert summary["method"] == "copied vectors" and summary["model"]["name"] == "splade-os-default"
