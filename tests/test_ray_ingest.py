"""Ingest on Ray: blocks, exact counts and dead letters, equality with the single-process ingest,
a worker killed mid-run, and resume. The Ray tests run a local Ray (`ray.init(num_cpus=2)`)."""

import json
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray  # the `ray` extra: the test environment installs it (never skipped)
from hypothesis import given
from hypothesis import strategies as st

from splade_os.bulk import BulkOptions, RetryPolicy
from splade_os.corpus import read_lines
from splade_os.ingest import IngestOptions, ingest
from splade_os.ingest.ray import LINE_LIMIT, Job, Ledger, RayOptions, jsonl_blocks

FAST_RETRY = RetryPolicy(initial=0.2, maximum=2.0, deadline=120)


@given(st.lists(st.sampled_from([b"", b"x", b'{"text": "a b"}', b"  "]), max_size=40), st.booleans(),
       st.integers(1, 7), st.integers(1, 9))
def test_blocks_cover_every_line_once(tmp_path_factory, lines, trailing_newline, block_lines, chunk_bytes):
    path = tmp_path_factory.mktemp("blocks") / "c.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline else b""))
    blocks = jsonl_blocks(path, block_lines, chunk_bytes=chunk_bytes)
    parts = [x for b in blocks for x in read_lines(path, start=b.start, stop=b.stop, first_line=b.first_line)]
    assert parts == list(read_lines(path))
    assert all(b.lines == block_lines for b in blocks[:-1])
    assert [b.number for b in blocks] == list(range(len(blocks)))


def test_versions_fall_with_the_line_and_rise_with_the_run():
    job = Job(*([None] * 13), version_base=29_000_000, cpus=None)
    later = Job(*([None] * 13), version_base=29_000_001, cpus=None)
    assert job.version(1) > job.version(2) > job.version(LINE_LIMIT - 1) > 0
    assert later.version(LINE_LIMIT - 1) > job.version(1)
    assert later.version(1) < 2**63


def test_cluster_pickles_by_reconnecting(cluster):
    copy = pickle.loads(pickle.dumps(cluster))
    assert copy is not cluster and copy.url == cluster.url and copy.engine is cluster.engine
    assert copy.request("GET", "/_cluster/health")["status"] in ("green", "yellow")


# -- on a local Ray ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _options(tmp_path, name, **kwargs):
    return IngestOptions(window=32, bulk=BulkOptions(docs=25, retry=FAST_RETRY), checkpoint=tmp_path / f"{name}.json",
                         dead_letter=tmp_path / f"{name}.dead.jsonl", **kwargs)


def _documents(cluster, index) -> dict:
    cluster.index(index).refresh()
    hits = cluster.request("POST", f"/{index}/_search", {"size": 10000, "query": {"match_all": {}},
                                                         "_source": ["splade", "text"]})["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def _dead(path: Path) -> list:
    return sorted((r["line"], r["reason"]) for r in map(json.loads, open(path))) if path.exists() else []


def _same_documents(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for doc_id, doc in left.items():
        other = right[doc_id]
        assert doc["text"] == other["text"], doc_id
        # Batches are cut differently in the two runs: the same numbers up to float rounding.
        keys = doc["splade"].keys() | other["splade"].keys()
        a = np.array([doc["splade"].get(k, 0.0) for k in keys])
        b = np.array([other["splade"].get(k, 0.0) for k in keys])
        assert np.allclose(a, b, rtol=1e-4, atol=1e-4), doc_id
        assert len(doc["splade"].keys() ^ other["splade"].keys()) <= 2, doc_id


@pytest.fixture(scope="module")
def mixed_corpus(sample_dir, tmp_path_factory):
    """150 Cranfield documents with bad lines, a blank line and duplicate ids (inside a block and across blocks)."""
    rows = open(sample_dir / "corpus.jsonl", encoding="utf-8").read().splitlines()[:150]
    rows[3] = '{"_id": "broken", "text": '
    rows[10] = '{"_id": "no-text"}'
    rows[20] = ""
    rows[41] = json.dumps({"_id": json.loads(rows[40])["_id"], "text": "a second document with the same id"})
    rows[120] = json.dumps({"_id": json.loads(rows[5])["_id"], "text": "a later duplicate in another block"})
    rows[130] = '{"text": "   "}'
    path = tmp_path_factory.mktemp("mixed") / "mixed.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_ray_ingest_equals_single_process(local_ray, cluster, default_model, mixed_corpus, tmp_path):
    from splade_os.documents.encoder import DocumentEncoder

    single = ingest(cluster, mixed_corpus, "single-mixed", default_model, show_progress=False,
                    encoder=DocumentEncoder(default_model, device="cpu"), options=_options(tmp_path, "single"))
    on_ray = ingest(cluster, mixed_corpus, "ray-mixed", default_model, show_progress=False,
                    options=_options(tmp_path, "ray", ray=RayOptions(workers=2, block_lines=40, cpus_per_worker=1)))
    assert (on_ray.indexed, on_ray.rejected, on_ray.count_after) == (single.indexed, single.rejected,
                                                                      single.count_after) == (144, 5, 144)
    dead = _dead(tmp_path / "ray.dead.jsonl")
    assert dead == _dead(tmp_path / "single.dead.jsonl")
    assert [line for line, _ in dead] == [4, 11, 42, 121, 131]
    _same_documents(_documents(cluster, "ray-mixed"), _documents(cluster, "single-mixed"))

    # The same documents from Parquet (row groups are the blocks).
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = []
    for line in open(mixed_corpus, encoding="utf-8"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("text", "").strip():
            good.append(record)
    good = good[:60]
    # Every column is kept in _source, as every field of a JSON line is.
    table = pa.Table.from_pylist([{"_id": r["_id"], "title": r.get("title", ""), "text": r["text"], "year": 1950 + i,
                                   "tags": ["aero", f"t{i % 3}"], "meta": {"pages": i}} for i, r in enumerate(good)])
    parquet = tmp_path / "docs.parquet"
    pq.write_table(table, parquet, row_group_size=20)
    from_parquet = ingest(cluster, parquet, "ray-parquet", default_model, show_progress=False,
                          options=_options(tmp_path, "parquet", ray=RayOptions(workers=1, cpus_per_worker=2)))
    assert from_parquet.indexed == from_parquet.count_after == len({r["_id"] for r in good})
    stored = cluster.request("GET", f"/ray-parquet/_doc/{good[7]['_id']}")["_source"]
    assert (stored["year"], stored["tags"], stored["meta"]) == (1957, ["aero", "t1"], {"pages": 7})
    expected = {k: v for k, v in _documents(cluster, "single-mixed").items() if k in {r["_id"] for r in good}}
    _same_documents(_documents(cluster, "ray-parquet"), expected)


def _map_workers() -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if "MapWorker" in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_killed_worker_is_retried_and_resume_skips_finished_blocks(local_ray, cluster, default_model, sample_dir,
                                                                     tmp_path):
    corpus = tmp_path / "cran240.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:240]),
                      encoding="utf-8")
    options = _options(tmp_path, "kill", ray=RayOptions(workers=1, block_lines=20, cpus_per_worker=2))
    ledger = Ledger(options.checkpoint)
    result = {}

    def run():
        try:
            result["stats"] = ingest(cluster, corpus, "ray-killed", default_model, options=options,
                                     show_progress=False)
        except BaseException as e:  # handed to the test
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    while not (ledger.blocks_dir.exists() and len(list(ledger.blocks_dir.glob("*.npz"))) >= 2):
        assert time.monotonic() < deadline and thread.is_alive(), result
        time.sleep(0.1)
    victims = _map_workers()
    assert victims, "no Ray Data worker process found"
    os.kill(victims[0].pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert not victims[0].is_running()
    ids = list(_documents(cluster, "ray-killed"))
    assert len(ids) == len(set(ids)) == 240 == result["stats"].indexed == result["stats"].count_after

    # A driver that died: its checkpoint is not complete and some blocks are not recorded.
    state = json.loads(options.checkpoint.read_text())
    state["complete"] = False
    options.checkpoint.write_text(json.dumps(state))
    for number in (3, 7):
        (ledger.blocks_dir / f"{number}.npz").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in ledger.blocks_dir.glob("*.npz")}
    options.resume = True
    resumed = ingest(cluster, corpus, "ray-killed", default_model, options=options, show_progress=False)
    assert resumed.indexed == resumed.count_after == 240 and resumed.rejected == 0
    assert {p.name: p.stat().st_mtime_ns for p in ledger.blocks_dir.glob("*.npz") if p.name in kept} == kept
    assert {p.name for p in ledger.blocks_dir.glob("*.npz")} == set(kept) | {"3.npz", "7.npz"}


@pytest.mark.slow
def test_actors_read_credentials_from_a_secret_file_not_task_arguments(local_ray, opensearch_url, default_model,
                                                                         sample_dir, tmp_path, monkeypatch):
    from faults import FaultProxy
    from splade_os.cluster import connect

    for name in ("SPLADE_OS_USER", "SPLADE_OS_PASSWORD", "OPENSEARCH_USER", "OPENSEARCH_PASSWORD",
                 "SPLADE_OS_CREDENTIALS_FILE", "SPLADE_OS_API_KEY", "SPLADE_OS_BEARER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    corpus = tmp_path / "cran40.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:40]), encoding="utf-8")
    secret = "s3cret-only-in-the-url"
    with FaultProxy(opensearch_url, basic_auth=f"ray-user:{secret}") as proxy:
        # The credentials exist only in the driver (the URL): every actor must read the secret file.
        driver = connect(proxy.url.replace("http://", f"http://ray-user:{secret}@"))
        options = _options(tmp_path, "secret", ray=RayOptions(workers=1, cpus_per_worker=2))
        stats = ingest(driver, corpus, "ray-secret", default_model, options=options, show_progress=False)
    assert stats.indexed == stats.count_after == 40
    assert not list(Path(str(options.checkpoint) + ".ray").glob("credentials-*"))  # removed at the end
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    leaked = [path for path in session.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert not leaked  # not in Ray's logs or spilled objects


# -- options and refusals (no Ray started) ------------------------------------------------------------

def test_cli_ray_options_are_checked(tmp_path):
    from click.testing import CliRunner

    from splade_os.cli import cli

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a"}\n')
    runner = CliRunner()
    result = runner.invoke(cli, ["-q", "ingest", str(corpus), "--index", "x", "--ray-workers", "2"])
    assert result.exit_code == 2 and "--ray-workers" in result.output and "needs --ray" in result.output
    result = runner.invoke(cli, ["-q", "ingest", str(corpus), "--index", "x", "--ray", "--shard", "0/2"])
    assert result.exit_code == 2 and "drop --shard" in result.output


def test_missing_ray_extra_is_one_line(monkeypatch, tmp_path):
    from splade_os.common import extras
    from splade_os.common.errors import MissingExtraError
    from splade_os.ingest.ray import run_on_ray

    monkeypatch.setitem(extras.EXTRAS, "ray", ("splade_os_no_such_module",))
    with pytest.raises(MissingExtraError, match=r"pip install 'splade-os\[ray\]'"):
        run_on_ray(None, IngestOptions(ray=RayOptions()), show_progress=False)


def test_resume_refuses_the_other_mode(tmp_path):
    from splade_os.common.errors import InputError
    from splade_os.ingest.ray import check_resume_mode

    checkpoint = tmp_path / "ckpt.json"
    with pytest.raises(InputError, match="did not run on Ray; resume it without --ray"):
        Ledger(checkpoint).load(checkpoint)
    Ledger(checkpoint).create(_write(tmp_path / "c.jsonl", b'{"text": "a"}\n' * 5), block_lines=2, workers=1)
    with pytest.raises(InputError, match="ran on Ray; resume it with --ray"):
        check_resume_mode(checkpoint, on_ray=False)
    check_resume_mode(checkpoint, on_ray=True)
    ledger = Ledger(checkpoint)
    ledger.load(checkpoint)
    assert [(b.first_line, b.lines) for b in ledger.blocks] == [(1, 2), (3, 2), (5, 1)]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_settling_duplicates_across_blocks(tmp_path):
    """First occurrences win; a later copy the cluster took while the first failed is deleted again."""
    from types import SimpleNamespace

    from fakes import FakeCluster
    from splade_os.ingest.checkpoint import Checkpoint
    from splade_os.corpus import CorpusFields
    from splade_os.ingest.ray import id_digest, settle_ledger

    rows = [{"_id": "a", "text": "first a"}, {"_id": "b", "text": "first b"}, {"_id": "a", "text": "second a"},
            {"_id": "b", "text": "second b"}, {"_id": "c", "text": "c"}]
    corpus = _write(tmp_path / "dups.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    checkpoint = tmp_path / "ckpt.json"
    ledger = Ledger(checkpoint)
    ledger.create(corpus, block_lines=2, workers=1)

    def block(lines, acked, dead=()):
        ids = [rows[line - 1]["_id"] for line in lines]
        return {"digests": np.array([id_digest(i) for i in ids], np.uint64).tobytes(),
                "lines": np.array(lines, np.int64).tobytes(), "acked": np.array(acked, np.bool_).tobytes(),
                "dead": "".join(json.dumps({"line": n, "reason": r, "raw_base64": ""}) + "\n" for n, r in dead)}

    # Line 1 ("a") was refused by the cluster but its copy on line 3 was taken; "b"'s copy on
    # line 4 lost to line 2 (HTTP 409).
    ledger.record(0, block([1, 2], [False, True], [(1, "mapping error")]))
    ledger.record(1, block([3, 4], [True, False], [(4, "version conflict (HTTP 409)")]))
    ledger.record(2, block([5], [True]))
    sent = []

    def handler(method, path, body):
        sent.append(body)
        return {"items": [{"delete": {"status": 200}}]}

    state = Checkpoint(str(corpus), 0, 0, "docs", "f", str(tmp_path / "dead.jsonl"))
    plan = SimpleNamespace(corpus=corpus, index=FakeCluster(handler).index("docs"), state=state,
                           checkpoint_path=checkpoint, dead_letter_path=tmp_path / "dead.jsonl")
    assert settle_ledger(plan, ledger, CorpusFields()) == (2, 3)
    dead = [json.loads(line) for line in open(tmp_path / "dead.jsonl")]
    assert [(d["line"], d["reason"]) for d in dead] == [(1, "mapping error"), (3, "duplicate id 'a'"),
                                                        (4, "duplicate id 'b'")]
    assert dead[1]["raw"] == json.dumps(rows[2])
    assert sent == [b'{"delete":{"_index":"docs","_id":"a"}}\n']
    assert (state.line, state.indexed, state.rejected) == (5, 2, 3)
