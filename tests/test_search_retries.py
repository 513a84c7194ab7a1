"""A search's retry budget and partial results: on scripted answers, and once on a real node."""

import json
import re

import pytest

import splade_os.cluster.index
from fakes import FakeCluster, splade_mapping
from splade_os.cluster.index import SHARD_RETRY_PAUSES, retry_pauses
from splade_os.common.errors import ClusterError, InputError
from splade_os.query.options import DEFAULT_RETRY_BUDGET, SearchOptions


def _answer(failed, hits=(), total=3):
    shards = {"total": total, "successful": total - failed, "skipped": 0, "failed": failed}
    if failed:
        shards["failures"] = [{"shard": 1, "reason": {"type": "node_disconnected_exception", "reason": "node left"}}]
    return {"_shards": shards, "hits": {"hits": [{"_id": i, "_score": 1.0, "_source": {}} for i in hits]}}


@pytest.fixture
def pauses(monkeypatch):
    """The pauses the searches slept, instead of sleeping them."""
    slept = []
    monkeypatch.setattr(splade_os.cluster.index.time, "sleep", slept.append)
    return slept


def _index(answers):
    """An index on a fake cluster whose searches get `answers` in turn (an exception is raised)."""

    def handler(method, path, body):
        if path.endswith("/_mapping"):
            return splade_mapping("docs")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return FakeCluster(handler).index("docs")


def test_the_pauses_fit_the_budget():
    assert DEFAULT_RETRY_BUDGET == pytest.approx(sum(SHARD_RETRY_PAUSES))  # the old fixed schedule
    assert retry_pauses(DEFAULT_RETRY_BUDGET) == pytest.approx(list(SHARD_RETRY_PAUSES))
    assert retry_pauses(0) == []
    assert retry_pauses(1.0) == pytest.approx([0.2, 0.5, 0.3])
    assert retry_pauses(12.0) == pytest.approx([0.2, 0.5, 1.0, 2.0, 4.0, 4.0, 0.3])
    with pytest.raises(InputError, match="retry budget"):
        SearchOptions(retry_budget=-1)


def test_a_budget_bounds_the_retries_then_the_search_fails(pauses):
    index = _index([_answer(1)] * 5)
    with pytest.raises(ClusterError, match="1 of 3 shard searches failed"):
        index.request_search({}, options=SearchOptions(retry_budget=1.0))
    assert pauses == pytest.approx([0.2, 0.5, 0.3])
    assert len(index.cluster.calls) == 4

    pauses.clear()
    once = _index([_answer(1)])
    with pytest.raises(ClusterError):
        once.request_search({}, options=SearchOptions(retry_budget=0))
    assert pauses == [] and len(once.cluster.calls) == 1


def test_partial_results_come_back_marked(pauses, default_model):
    encoder = default_model.query_encoder
    index = _index([_answer(1, ["a"]), _answer(1, ["a", "b"])])
    hits = index.search("lift", encoder=encoder, options=SearchOptions(retry_budget=0.2, allow_partial_results=True))
    assert [hit.id for hit in hits] == ["a", "b"]  # the last answer, once the budget was spent
    assert hits.partial and "1 of 3 shard searches failed (node left)" in hits.problem
    assert hits.shards == {"total": 3, "successful": 2, "skipped": 0, "failed": 1}
    assert pauses == pytest.approx([0.2])

    # A whole answer is not partial, allowed or not; its shards are counted all the same.
    whole = _index([_answer(1), _answer(0, ["c"])]).search("lift", encoder=encoder, allow_partial_results=True)
    assert [hit.id for hit in whole] == ["c"] and not whole.partial and whole.problem is None
    assert whole.shards["successful"] == 3


def test_partial_results_of_a_hybrid_search(pauses, default_model):
    from splade_os.query.hybrid import Hybrid

    answers = [{"responses": [_answer(0, ["a"]), _answer(2, ["b"])]}]
    hits = _index(answers).search("lift", encoder=default_model.query_encoder, hybrid=Hybrid(),
                                  options=SearchOptions(retry_budget=0, allow_partial_results=True, source=False))
    assert sorted(hit.id for hit in hits) == ["a", "b"]
    assert hits.partial and hits.shards == {"total": 6, "successful": 4, "skipped": 0, "failed": 2}


def test_a_search_failed_on_every_shard_is_never_partial(pauses):
    failed = {"responses": [_answer(0), {"error": {"type": "search_phase_execution_exception"}, "status": 500}]}
    index = _index([failed])
    with pytest.raises(ClusterError, match="failed on every shard"):
        index.request_msearch([{}, {}], options=SearchOptions(retry_budget=0, allow_partial_results=True))
    error = ClusterError("all shards failed", status=500, error_type="search_phase_execution_exception")
    with pytest.raises(ClusterError, match="all shards failed"):
        _index([error, error]).request_search({}, options=SearchOptions(retry_budget=0.2, allow_partial_results=True))
    assert pauses == pytest.approx([0.2])


def test_a_shard_failure_on_a_real_node(opensearch_cluster, default_model, sample_dir, tmp_path):
    """An alias over two indexes whose `stamp` field is a date in one and a keyword in the other: a
    range from "not a date" fails on the first one's shard only, and the engine answers 200 with
    that shard failed. The search fails in one line, or with --allow-partial-results shows the
    other index's hits and says so."""
    from click.testing import CliRunner

    from samples import first_documents
    from splade_os.cli import cli
    from splade_os.documents.settings import IndexSettings
    from splade_os.ingest import IngestOptions, ingest

    lines = first_documents(sample_dir, tmp_path, 6).read_text(encoding="utf-8").splitlines()
    for name, stamp, kind, part in (("partial-a", "2024-01-01", "date", lines[:3]),
                                    ("partial-b", "x", "keyword", lines[3:])):
        corpus = tmp_path / f"{name}.jsonl"
        corpus.write_text("".join(json.dumps({**json.loads(line), "stamp": stamp}) + "\n" for line in part))
        ingest(opensearch_cluster, corpus, name, default_model, show_progress=False, options=IngestOptions(
            index=IndexSettings(mapping={"properties": {"stamp": {"type": kind}}}),
            checkpoint=tmp_path / f"{name}.checkpoint", dead_letter=tmp_path / f"{name}.dead"))
    opensearch_cluster.request("POST", "/_aliases", {"actions": [
        {"add": {"index": "partial-a", "alias": "partial-ab"}}, {"add": {"index": "partial-b", "alias": "partial-ab"}}]})
    search = ["-q", "search", "boundary layer", "--index", "partial-ab", "--url", opensearch_cluster.url, "--json",
              "--fields", "stamp", "--filter-json", '{"range": {"stamp": {"gte": "not a date"}}}',
              "--retry-budget", "0.2"]

    result = CliRunner().invoke(cli, search)
    assert result.exit_code == 1 and result.stdout == ""
    assert re.fullmatch(r"Error: searching 'partial-ab': 1 of 2 shard searches failed \(.*\)\n", result.stderr)

    result = CliRunner().invoke(cli, [*search, "--allow-partial-results"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits and {hit["source"]["stamp"] for hit in hits} == {"x"}  # partial-b's documents only
    assert result.stderr.startswith("Warning: partial results: 1 of 2 shard searches failed (")
    assert result.stderr.rstrip().endswith("the hits are those of the 1 shard searches that answered")
