"""The smoke set each engine version of the matrix runs (docs/nodes.md, "Engine versions"):
push and pull a model, ingest with the pulled model, search, filter, hybrid and eval, on one
small index. The full suite runs on the default versions; CI runs the tests marked `smoke` again
on each other version ($SPLADE_OS_TEST_OPENSEARCH_VERSION, see tests/conftest.py).
"""

import filecmp
import json

import pytest

from samples import first_documents
from splade_os.corpus.beir import load_beir
from splade_os.evaluate import evaluate_exact, exact_doc_vectors
from splade_os.evaluate.compare import compare_index
from splade_os.ingest import IngestOptions, ingest
from splade_os.models.registry import pull, push
from splade_os.models.resolve import resolve_model
from splade_os.query.hybrid import Hybrid

DOCS = 150


def test_each_version_runs_on_its_java_and_gets_the_modules_its_zip_lacks(tmp_path, monkeypatch):
    from splade_os.common.errors import InputError
    from splade_os.node import distribution
    from splade_os.node.engines import ELASTICSEARCH_NODE, OPENSEARCH_NODE, version_key

    assert OPENSEARCH_NODE.versions[0] == OPENSEARCH_NODE.version and "2.19.6" in OPENSEARCH_NODE.versions
    assert OPENSEARCH_NODE.java_range("2.19.6") == (17, 23)  # the security manager left Java 24
    assert OPENSEARCH_NODE.java_range("3.5.0") == OPENSEARCH_NODE.java_range("3.8.0") == (21, None)
    assert ELASTICSEARCH_NODE.java_range(ELASTICSEARCH_NODE.version) == (21, None)
    assert version_key("2.19") == (2, 19, 0) < version_key("2.19.6") < version_key("3.5.0") < version_key("10.0.0")
    for bad in ("latest", "3.x", "", "3..5"):
        with pytest.raises(InputError, match="expected numbers and dots"):
            version_key(bad)

    # A zip without mapper-extras gets it with the descriptor the engine reads (unknown keys are
    # refused); one that has it is left alone. (The node that loads it: the 2.19 smoke run.)
    copied = []
    monkeypatch.setattr(distribution, "_maven_copy", lambda artifact, target, what: (
        copied.append(artifact), target.parent.mkdir(parents=True), target.write_bytes(b"jar")))
    for version, classname in (("2.19.6", "MapperExtrasPlugin"), ("3.4.0", "MapperExtrasModulePlugin")):
        home = tmp_path / version
        distribution._add_modules(OPENSEARCH_NODE, version, home, show_progress=False)
        folder = home / "modules" / "mapper-extras"
        descriptor = dict(line.split("=", 1) for line in (folder / "plugin-descriptor.properties").read_text().splitlines())
        assert descriptor == {"name": "mapper-extras", "description": "Adds advanced field mappers", "version": version,
                              "opensearch.version": version, "java.version": str(OPENSEARCH_NODE.java_range(version)[0]),
                              "classname": f"org.opensearch.index.mapper.{classname}"}
        assert (folder / f"mapper-extras-client-{version}.jar").is_file()
    assert copied == ["org.opensearch.plugin:mapper-extras-client:2.19.6", "org.opensearch.plugin:mapper-extras-client:3.4.0"]
    distribution._add_modules(OPENSEARCH_NODE, "2.19.6", tmp_path / "2.19.6", show_progress=False)
    assert len(copied) == 2


@pytest.mark.smoke
@pytest.mark.slow
def test_push_pull_ingest_search_filter_hybrid_eval(cluster, default_model, sample_dir, tmp_path):
    version = cluster.version  # named in a failure: which version of the matrix broke

    entry = push(cluster, default_model.root, "smoke", show_progress=False)
    pulled = pull(cluster, f"smoke@{entry['version']}", dest=tmp_path / "pulled", show_progress=False)
    files = sorted(p.relative_to(default_model.root) for p in default_model.root.rglob("*") if p.is_file())
    assert files and all(filecmp.cmp(default_model.root / f, pulled / f, shallow=False) for f in files)
    model = resolve_model(f"smoke@{entry['version']}", cluster, show_progress=False)

    corpus = first_documents(sample_dir, tmp_path, DOCS)
    stats = ingest(cluster, corpus, "smoke", model, show_progress=False,
                   options=IngestOptions(dead_letter=tmp_path / "dead.jsonl", checkpoint=tmp_path / "smoke.json"))
    assert (stats.indexed, stats.rejected) == (DOCS, 0), version
    index = cluster.index("smoke")
    try:
        hits = index.search("boundary layer", k=10)
        assert hits and hits[0].score >= hits[-1].score > 0
        # A filter restricts and never scores: the same hits, less those it excludes, same scores.
        keep = {hit.id for hit in hits[::2]}
        filtered = index.search("boundary layer", k=10, filter={"ids": {"values": sorted(keep)}})
        assert [(h.id, h.score) for h in filtered] == [(h.id, h.score) for h in hits if h.id in keep]
        fused = index.search("boundary layer", k=10, hybrid=Hybrid())
        assert fused and {h.id for h in fused} & {h.id for h in hits}

        queries, qrels, _ = load_beir(sample_dir)
        ids = {json.loads(line)["_id"] for line in open(corpus, encoding="utf-8")}
        qrels = {q: {d: g for d, g in docs.items() if d in ids} for q, docs in qrels.items()}
        qrels = {q: docs for q, docs in qrels.items() if docs}
        result = index.evaluate(queries, qrels, k=10)
        exact = evaluate_exact(exact_doc_vectors(corpus, model, device="cpu"), queries, qrels,
                               model.query_encoder, k=10)
        # The index loses only the 9-bit storage of the values.
        assert result.queries == len(qrels) > 5
        assert result.metrics["ndcg@10"] == pytest.approx(exact["ndcg@10"], abs=0.01)
        comparison = compare_index(index, queries, qrels, model.query_encoder, k=10)
        assert list(comparison.results) == ["bm25", "splade", "hybrid"]
        assert all(r.metrics["ndcg@10"] > 0 for r in comparison.results.values())
    finally:
        cluster.request("DELETE", "/smoke")
