"""Existing indexes: `enrich` adds SPLADE vectors to an index an app owns and keeps writing to,
on both engines: the app's fields untouched, concurrent changes never overwritten with stale
vectors, deletions kept, bad documents dead-lettered, kill -9 + rerun, `--follow`."""

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from splade_os.bulk import BulkLines
from splade_os.common.errors import IndexStateError, InputError
from splade_os.documents.vectors import SparseVector
from splade_os.query.hybrid import Hybrid
from splade_os.ingest.enrich import EnrichOptions, EnrichState, _trim_dead_letters, _value, content_hash, enrich

import numpy as np

APP_MAPPING = {"_meta": {"owner": "the app"},
               "properties": {"name": {"type": "text"}, "description": {"type": "text"},
                              "category": {"type": "keyword"}, "price": {"type": "float"},
                              "specs": {"properties": {"weight": {"type": "float"}}}}}
OURS = {"splade", "splade_model", "ingested_at", "splade_hash"}


# -- without a cluster --------------------------------------------------------------------------

def test_update_lines_send_only_splade_os_fields_and_the_version_read():
    lines = BulkLines("enrich-shop", "splade", ["a", "b", "c"])
    vector = SparseVector(np.array([0, 2]), np.array([0.5, 1.25], dtype=np.float32))
    action, body = lines.update("p1", (17, 3), {"splade_hash": "h"}, vector).splitlines()
    assert json.loads(action) == {"update": {"_index": "enrich-shop", "_id": "p1", "if_seq_no": 17, "if_primary_term": 3}}
    assert json.loads(body) == {"doc": {"splade_hash": "h", "splade": {"a": 0.5, "c": 1.25}}}
    action, body = lines.document("p1", {"name": "x"}, vector, condition=(4, 1)).splitlines()
    assert json.loads(action)["index"] == {"_index": "enrich-shop", "_id": "p1", "if_seq_no": 4, "if_primary_term": 1}


def test_field_paths_and_hashes():
    assert _value({"a": {"b": "x"}}, "a.b") == "x"
    assert _value({"a.b": "y", "a": {"b": "x"}}, "a.b") == "y"  # a key with a dot in it wins
    assert _value({"a": "x"}, "a.b") is None
    assert content_hash("t x") != content_hash("t  x") and len(content_hash("")) == 32


def test_dead_letters_past_the_checkpoint_are_dropped_on_rerun(tmp_path):
    path = tmp_path / "dead.jsonl"
    records = [{"id": "a", "shard": 0, "seq_no": 5}, {"id": "b", "shard": 0, "seq_no": 9},
               {"id": "c", "shard": 1, "seq_no": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert _trim_dead_letters(path, {"0": 7, "1": 2}) == 2
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "c"]


def test_options_are_checked():
    with pytest.raises(InputError, match="slice 2/2"):
        EnrichOptions(slice=(2, 2))
    with pytest.raises(InputError, match="batch 0"):
        EnrichOptions(batch=0)


# -- an app's index on both engines ---------------------------------------------------------------

def app_documents(sample_dir: Path, n: int) -> dict:
    """n product documents over Cranfield's texts; every 97th has no description, every 89th a non-text one."""
    cran = [json.loads(line) for line in open(sample_dir / "corpus.jsonl", encoding="utf-8")]
    docs = {}
    for i in range(n):
        source = cran[i % len(cran)]
        doc = {"name": source["title"], "description": " ".join(source["text"].split()[:40]) + f" item {i}",
               "category": ("books", "tools", "toys")[i % 3], "price": round(1 + i / 10, 2),
               "specs": {"weight": i % 17}}
        if i % 97 == 5:
            del doc["description"]
        elif i % 89 == 7:
            doc["description"] = ["not", "text"] if i % 2 else 12.5
        docs[f"p{i}"] = doc
    return docs


def bad_ids(docs: dict) -> set:
    return {i for i, d in docs.items() if not isinstance(d.get("description"), str)}


def create_app_index(cluster, name: str, docs: dict, shards: int = 2) -> None:
    """What an app does: its own mapping, its own bulk writes (no splade-os involved)."""
    cluster.request("DELETE", f"/{name}", params={"ignore_unavailable": "true"})
    cluster.request("PUT", f"/{name}", {"settings": {"number_of_shards": shards, "number_of_replicas": 0},
                                        "mappings": APP_MAPPING})
    items = list(docs.items())
    for start in range(0, len(items), 500):
        body = b"".join(orjson.dumps({"index": {"_index": name, "_id": i}}) + b"\n" + orjson.dumps(d) + b"\n"
                        for i, d in items[start:start + 500])
        assert not cluster.request("POST", "/_bulk", body, ndjson=True)["errors"]
    cluster.request("POST", f"/{name}/_refresh")


def stored(cluster, name: str, ids) -> dict:
    found, ids = {}, list(ids)
    for start in range(0, len(ids), 500):
        answer = cluster.request("POST", f"/{name}/_mget", {"ids": ids[start:start + 500]})
        found.update({d["_id"]: d["_source"] for d in answer["docs"] if d.get("found")})
    return found


def content(doc: dict) -> str:
    return f"{doc['name']} {doc['description']}" if doc.get("name") else doc["description"]


def assert_enriched(cluster, name: str, expected: dict, encoder, keys, check_vectors=()):
    """Every live document holds exactly the app's fields plus vectors of its current text."""
    cluster.index(name).refresh()
    docs = stored(cluster, name, list(expected) + ["never-there"])
    assert set(docs) == set(expected)  # deleted ones stay deleted, nothing appears
    for doc_id, source in docs.items():
        app = {k: v for k, v in source.items() if k not in OURS}
        assert app == expected[doc_id], doc_id  # no app field changed
        if isinstance(expected[doc_id].get("description"), str):
            assert source["splade_hash"] == content_hash(content(expected[doc_id])), doc_id
        else:
            assert OURS.isdisjoint(source), doc_id
    checked = sorted(set(check_vectors) & set(docs))
    vectors = encoder.encode([content(expected[i]) for i in checked])
    for doc_id, vector in zip(checked, vectors):
        features = docs[doc_id]["splade"]
        want = vector.to_dict(keys)
        assert set(features) == set(want), doc_id  # no stale feature left behind
        assert max(abs(features[k] - want[k]) for k in want) < 1e-4 * max(want.values()), doc_id


@pytest.fixture(scope="module")
def doc_encoder(default_model):
    from splade_os.documents.encoder import DocumentEncoder

    return DocumentEncoder(default_model, device="cpu")


class _Meddling:
    """A document encoder during whose calls "the app" writes: the documents being encoded change
    or vanish between enrich's read and its write, and a writer thread changes others meanwhile."""

    def __init__(self, encoder, meddle):
        self.encoder, self.meddle, self.calls = encoder, meddle, 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode(self, texts):
        self.calls += 1
        vectors = self.encoder.encode(texts)
        self.meddle(self.calls, texts)
        return vectors

    def encode_stream(self, windows, on_batch=None):
        for payload, vectors in self.encoder.encode_stream(windows, on_batch):
            self.calls += 1
            self.meddle(self.calls, [doc.content for doc in payload[0]])
            yield payload, vectors


@pytest.mark.slow
def test_enrich_while_the_app_writes(cluster, default_model, doc_encoder, sample_dir, tmp_path):
    docs = app_documents(sample_dir, 2000)
    create_app_index(cluster, "enrich-shop", docs)
    expected = {i: dict(d) for i, d in docs.items()}
    by_text = {content(d): i for i, d in docs.items() if isinstance(d.get("description"), str)}
    rng = random.Random(7)
    good = sorted(set(docs) - bad_ids(docs))
    touched, lock = set(), threading.Lock()

    def change(doc_id, partial: bool):
        text = f"changed {doc_id} {rng.random():.6f}: thermal buckling of plates"
        if partial:
            cluster.request("POST", f"/enrich-shop/_update/{doc_id}", {"doc": {"description": text}})
            expected[doc_id] = {**expected[doc_id], "description": text}
        else:
            new = {**expected[doc_id], "description": text, "price": 1.5}
            cluster.request("PUT", f"/enrich-shop/_doc/{doc_id}", new)
            expected[doc_id] = new
        touched.add(doc_id)

    def delete(doc_id):
        cluster.request("DELETE", f"/enrich-shop/_doc/{doc_id}")
        expected.pop(doc_id)

    def writer(stop):
        while not stop.is_set():
            with lock:
                doc_id = rng.choice([i for i in good if i in expected])
                rng.choice([lambda: change(doc_id, True), lambda: change(doc_id, False), lambda: delete(doc_id)])()
                new_id = f"new{len(touched)}-{rng.randrange(10**6)}"
                expected[new_id] = {"name": "added later", "description": "a new shell theory"}
                cluster.request("PUT", f"/enrich-shop/_doc/{new_id}", expected[new_id])
                touched.add(new_id)
            time.sleep(0.02)

    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(stop,))

    def meddle(call, texts):
        if call == 1:
            thread.start()
        with lock:  # the documents just encoded change or vanish before enrich writes them
            ids = [by_text[t] for t in texts if t in by_text and by_text[t] in expected]
            for doc_id in ids[:3]:
                change(doc_id, partial=True)
            for doc_id in ids[3:5]:
                change(doc_id, partial=False)
            for doc_id in ids[5:7]:
                delete(doc_id)
        if call == 4:
            stop.set()
            thread.join()

    options = EnrichOptions(text_field="description", title_field="name", batch=150,
                            checkpoint=tmp_path / "ckpt.json", dead_letter=tmp_path / "dead.jsonl")
    try:
        stats = enrich(cluster, "enrich-shop", default_model, options=options, encoder=_Meddling(doc_encoder, meddle),
                       show_progress=False)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
    assert stats.adopted and stats.conflicts >= 10 and stats.deleted >= 6
    assert stats.encoded >= len(good) - stats.deleted
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in dead) == sorted(bad_ids(docs)) and stats.rejected == len(bad_ids(docs))
    assert all("description" in d["reason"] for d in dead)
    assert_enriched(cluster, "enrich-shop", expected, doc_encoder, default_model.query_encoder.keys,
                    check_vectors=sorted(touched) + rng.sample(good, 40))
    mapping = cluster.request("GET", "/enrich-shop/_mapping")["enrich-shop"]["mappings"]
    assert mapping["_meta"]["owner"] == "the app" and mapping["_meta"]["splade_os"]["text_field"] == "description"
    # The first complete run measured the hybrid fusion (as ingest does) beside the app's _meta.
    assert stats.fusion.startswith("fusion rrf") and mapping["_meta"]["splade_os"]["fusion"]["calibration"]["queries"] > 100
    assert "default_pipeline" not in cluster.request("GET", "/enrich-shop/_settings")["enrich-shop"]["settings"]["index"]

    # Searches, BM25 and hybrid work on it as on an ingested index; a rerun finds nothing to do.
    index = cluster.index("enrich-shop")
    assert index.search("thermal buckling of plates", k=1)[0].id in touched
    assert all(hit.source["category"] == "books"
               for hit in index.search("buckling", k=5, hybrid=Hybrid(), filter="category=books", source=["category"]))
    again = enrich(cluster, "enrich-shop", options=EnrichOptions(checkpoint=tmp_path / "ckpt.json",
                                                          dead_letter=tmp_path / "dead.jsonl"),
                   encoder=doc_encoder, show_progress=False)
    assert (again.encoded, again.rejected, again.adopted) == (0, 0, False)
    cluster.request("DELETE", "/enrich-shop")


@pytest.mark.slow
def test_kill_9_and_rerun_reach_the_same_end_state(cluster, engine_url, default_model, doc_encoder, sample_dir,
                                                   tmp_path):
    docs = app_documents(sample_dir, 600)
    create_app_index(cluster, "enrich-killed", docs, shards=3)
    checkpoint, dead = tmp_path / "ckpt.json", tmp_path / "dead.jsonl"
    command = [sys.executable, "-m", "splade_os", "-q", "enrich", "enrich-killed", "--url", engine_url,
               "--text-field", "description", "--title-field", "name", "--batch", "20", "--bulk-docs", "5",
               "--checkpoint", str(checkpoint), "--dead-letter", str(dead), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            state = EnrichState.load(checkpoint) if checkpoint.exists() else None
            if state and state.encoded >= 100:
                break
            assert process.poll() is None, f"enrich ended before it could be killed: {process.stderr.read()}"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate(timeout=120)
    state = EnrichState.load(checkpoint)
    assert 100 <= state.encoded < 600 - len(bad_ids(docs))

    before = doc_encoder.documents
    stats = enrich(cluster, "enrich-killed", options=EnrichOptions(checkpoint=checkpoint, dead_letter=dead),
                   encoder=doc_encoder, show_progress=False)
    # Only what the checkpoint had not settled is encoded again: at most the pages in flight (the
    # one being written and the two the encoder reads ahead, 20 documents each).
    assert doc_encoder.documents - before <= 600 - len(bad_ids(docs)) - state.encoded + 3 * 20
    assert stats.adopted is False
    dead_ids = [json.loads(line)["id"] for line in dead.read_text().splitlines()]
    assert sorted(dead_ids) == sorted(bad_ids(docs))  # each bad document once, none lost
    assert_enriched(cluster, "enrich-killed", docs, doc_encoder, default_model.query_encoder.keys,
                    check_vectors=random.Random(3).sample(sorted(set(docs) - bad_ids(docs)), 30))
    cluster.request("DELETE", "/enrich-killed")


@pytest.mark.slow
def test_follow_picks_up_new_and_changed_documents(cluster, default_model, doc_encoder, sample_dir, tmp_path):
    docs = app_documents(sample_dir, 120)
    create_app_index(cluster, "enrich-live", docs)
    options = EnrichOptions(text_field="description", title_field="name", follow=True, interval=0.5,
                            checkpoint=tmp_path / "ckpt.json", dead_letter=tmp_path / "dead.jsonl")
    stop, result = threading.Event(), {}

    def run():
        try:
            result["stats"] = enrich(cluster, "enrich-live", default_model, options=options, encoder=doc_encoder,
                                     show_progress=False, stop=stop)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    try:
        def hash_of(doc_id):
            cluster.index("enrich-live").refresh()
            found = cluster.request("POST", "/enrich-live/_mget", {"ids": [doc_id]})["docs"][0]
            return found.get("_source", {}).get("splade_hash")

        def wait_for(doc_id, doc):
            deadline = time.monotonic() + 60
            while hash_of(doc_id) != content_hash(content(doc)):
                assert time.monotonic() < deadline and thread.is_alive(), result
                time.sleep(0.1)
            return time.monotonic()

        wait_for("p0", docs["p0"])  # the first pass is done with p0
        new = {"name": "late", "description": "an axisymmetric jet"}
        written = time.monotonic()
        cluster.request("PUT", "/enrich-live/_doc/late", new)
        cluster.request("POST", "/enrich-live/_update/p1", {"doc": {"description": "a changed text"}})
        picked_up = max(wait_for("late", new), wait_for("p1", {**docs["p1"], "description": "a changed text"}))
        print(f"follow: picked up {picked_up - written:.2f} s after the write (interval 0.5 s)")
    finally:
        stop.set()
        thread.join(timeout=120)
    assert "error" not in result, result.get("error")
    stats = result["stats"]
    assert stats.stopped and stats.encoded >= len(docs) - len(bad_ids(docs)) + 1  # p1 may be changed mid-pass
    cluster.request("DELETE", "/enrich-live")


def test_enrich_refuses_what_it_cannot_do(cluster, default_model, tmp_path):
    docs = {"a": {"name": "x", "description": "lift"}}
    create_app_index(cluster, "enrich-refusals", docs)
    with pytest.raises(InputError, match="--text-field"):
        enrich(cluster, "enrich-refusals", default_model, show_progress=False)
    with pytest.raises(IndexStateError, match="no field 'body'"):
        enrich(cluster, "enrich-refusals", default_model, options=EnrichOptions(text_field="body"), show_progress=False)
    with pytest.raises(IndexStateError, match="does not exist"):
        enrich(cluster, "no-such-index", default_model, options=EnrichOptions(text_field="body"), show_progress=False)
    with pytest.raises(IndexStateError, match="'price'.*splade-os would write"):
        enrich(cluster, "enrich-refusals", default_model, options=EnrichOptions(text_field="description", field="price"),
               show_progress=False)
    assert "splade_os" not in cluster.request("GET", "/enrich-refusals/_mapping")["enrich-refusals"]["mappings"].get("_meta", {})

    from splade_os.cli.main import cli

    result = CliRunner().invoke(cli, ["-q", "enrich", "enrich-refusals", "--url", cluster.url, "--text-field", "description",
                                      "--checkpoint", str(tmp_path / "c.json"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("encoded 1, already current 0, rejected 0")
    result = CliRunner().invoke(cli, ["-q", "enrich", "enrich-refusals", "--url", cluster.url, "--text-field", "name",
                                      "--checkpoint", str(tmp_path / "c.json")])
    assert result.exit_code == 1 and "records 'description' as its text field" in result.output
    assert len(result.output.strip().splitlines()) == 1
    cluster.request("DELETE", "/enrich-refusals")


@pytest.mark.slow
def test_search_through_an_enriched_index_equals_an_ingested_one(cluster, default_model, doc_encoder, sample_dir,
                                                                 tmp_path):
    from splade_os.ingest import IngestOptions, ingest

    lines = open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:400]
    corpus = tmp_path / "cran400.jsonl"
    corpus.write_text("".join(lines), encoding="utf-8")
    ingest(cluster, corpus, "enrich-ingested", default_model, encoder=doc_encoder, show_progress=False,
           options=IngestOptions(checkpoint=tmp_path / "i.json", dead_letter=tmp_path / "i-dead.jsonl"))
    docs = {}
    for line in lines:
        record = json.loads(line)
        docs[record["_id"]] = {"title": record.get("title", ""), "text": record["text"]}
    cluster.request("PUT", "/enrich-app-owned", {"mappings": {"properties": {"title": {"type": "text"},
                                                                      "text": {"type": "text"}}}})
    body = b"".join(orjson.dumps({"index": {"_index": "enrich-app-owned", "_id": i}}) + b"\n" + orjson.dumps(d) + b"\n"
                    for i, d in docs.items())
    assert not cluster.request("POST", "/_bulk", body, ndjson=True, params={"refresh": "true"})["errors"]
    enrich(cluster, "enrich-app-owned", default_model, encoder=doc_encoder, show_progress=False,
           options=EnrichOptions(text_field="text", checkpoint=tmp_path / "e.json"))
    queries = [json.loads(line)["text"] for line in open(sample_dir / "queries.jsonl", encoding="utf-8")][:60]
    for text in queries:
        ingested = [(h.id, h.score) for h in cluster.index("enrich-ingested").search(text, k=10)]
        enriched = [(h.id, h.score) for h in cluster.index("enrich-app-owned").search(text, k=10)]
        # The same vectors up to float rounding (the two encode different batches of documents):
        # the same scores to 1e-5, and the same documents in the same order but among (near) ties,
        # which Lucene breaks by its own doc ids.
        assert np.allclose([s for _, s in enriched], [s for _, s in ingested], rtol=1e-5), text
        assert _by_score(enriched) == _by_score(ingested), text
    for name in ("enrich-ingested", "enrich-app-owned"):
        cluster.request("DELETE", f"/{name}")


def _by_score(hits: list, rtol: float = 1e-5) -> list:
    """The ids of a top-k list grouped by (near) equal scores, best first, leaving out the last
    group (its ties may be cut off at k)."""
    groups, last = [], None
    for doc_id, score in hits:
        if last is None or abs(score - last) > rtol * abs(last):
            groups.append(set())
        groups[-1].add(doc_id)
        last = score
    return groups[:-1]


@pytest.mark.slow
def test_slices_share_an_index(cluster, default_model, doc_encoder, sample_dir, tmp_path):
    """Two readers (`slice` 0/2 and 1/2) each take their shards; together they enrich everything once."""
    docs = app_documents(sample_dir, 90)
    create_app_index(cluster, "enrich-sliced", docs, shards=3)
    encoded = []
    for part in range(2):
        options = EnrichOptions(text_field="description", title_field="name", slice=(part, 2),
                                checkpoint=tmp_path / f"ckpt-{part}.json", dead_letter=tmp_path / f"dead-{part}.jsonl")
        stats = enrich(cluster, "enrich-sliced", default_model, options=options, encoder=doc_encoder, show_progress=False)
        encoded.append(stats.encoded)
        assert set(EnrichState.load(tmp_path / f"ckpt-{part}.json").positions) == ({"0", "2"} if part == 0 else {"1"})
    assert all(encoded) and sum(encoded) == len(docs) - len(bad_ids(docs))
    assert_enriched(cluster, "enrich-sliced", docs, doc_encoder, default_model.query_encoder.keys)
    cluster.request("DELETE", "/enrich-sliced")
