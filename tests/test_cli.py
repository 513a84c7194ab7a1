"""The command line: one-line errors, and the commands end to end (the reference is checked in test_docs)."""

import json
import re
from pathlib import Path

from click.testing import CliRunner

import pytest

from splade_os.cli import cli

CLI_SMALL_NDCG = 0.0441  # nDCG@10 of the 40-document index over Cranfield's 225 queries


def run(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_unreachable_cluster_is_one_line_error():
    result = run("-q", "search", "lift", "--index", "x", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert re.fullmatch(r"Error: http://127\.0\.0\.1:9: cannot reach the cluster .*\n", result.output)
    assert "Traceback" not in result.output


def test_password_never_printed():
    result = run("-q", "search", "lift", "--index", "x", "--url", "http://bob:s3cret@127.0.0.1:9",
                 env={"OPENSEARCH_PASSWORD": "hunter2"})
    assert result.exit_code == 1
    assert "s3cret" not in result.output and "hunter2" not in result.output and "bob" not in result.output


def test_missing_model_folder(tmp_path):
    result = run("-q", "query", "lift", "--model", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'nope'}: no such model folder\n"


def test_not_an_inference_free_model(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x.Transformer"}]))
    result = run("-q", "query", "lift", "--model", str(tmp_path))
    assert result.exit_code == 1 and "not an inference-free SPLADE model" in result.output


def test_missing_corpus(tmp_path):
    result = run("-q", "ingest", str(tmp_path / "none.jsonl"), "--index", "x", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1 and result.output == f"Error: {tmp_path / 'none.jsonl'}: no such file\n"


def test_unknown_pair_kind_is_one_line_error(tmp_path):
    result = run("train", "--beir", str(tmp_path), "--pairs", "lead+cloze", "-o", str(tmp_path / "run"))
    assert result.exit_code == 2 and "'cloze' is not one of lead, ict, crop, title" in result.output
    assert "Traceback" not in result.output


def test_query_prints_dsl(default_model):
    result = run("-q", "query", "Lift of a wing...", "--size", "3")
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body["size"] == 3
    fields = [c["rank_feature"]["field"] for c in body["query"]["bool"]["should"]]
    assert "splade.lift" in fields and "splade.%2E" in fields


@pytest.mark.slow
def test_ingest_and_search_commands(opensearch_url, tmp_path, sample_dir):
    corpus = tmp_path / "small.jsonl"
    lines = open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:40]
    # Line 41 is broken JSON; line 42 valid JSON whose text escapes an unpaired surrogate.
    corpus.write_text("".join(lines) + "{broken\n" + '{"text": "lone \\ud800"}\n', encoding="utf-8")
    dead = tmp_path / "dead.jsonl"
    result = run("-q", "ingest", str(corpus), "--index", "cli-small", "--url", opensearch_url,
                 "--dead-letter", str(dead))
    assert result.exit_code == 1
    assert "indexed 40, rejected 2" in result.output
    assert f"Error: 2 line(s) rejected; see {dead}" in result.output
    rejected = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [r["line"] for r in rejected] == [41, 42] and "unpaired surrogate" in rejected[1]["reason"]

    result = run("-q", "search", "boundary layer", "--index", "cli-small", "--url", opensearch_url, "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    result = run("-q", "search", "boundary layer", "--index", "cli-small", "--url", opensearch_url)
    assert result.exit_code == 0 and result.output.splitlines()[0].startswith("  1 ")

    result = run("-q", "search", "x", "--index", "no-such-index", "--url", opensearch_url)
    assert result.exit_code == 1 and "index 'no-such-index' does not exist" in result.output

    result = run("-q", "query", "boundary layer", "--index", "cli-small", "--url", opensearch_url)
    assert result.exit_code == 0 and json.loads(result.output)["query"]["bool"]["should"]
    other = tmp_path / "other-model"
    import shutil

    from safetensors.numpy import load_file, save_file

    from splade_os.models.resolve import resolve_model

    shutil.copytree(resolve_model("default", show_progress=False).root, other)
    table_file = other / "query_0_SparseStaticEmbedding" / "model.safetensors"
    save_file({"weight": load_file(str(table_file))["weight"] * 2}, str(table_file))
    for command in ("query", "search"):
        result = run("-q", command, "boundary layer", "--index", "cli-small", "--url", opensearch_url, "--model", str(other))
        assert result.exit_code == 1 and "was ingested with model 'splade-os-default'" in result.output, result.output

    result = run("-q", "init", "--index", "cli-small", "--url", opensearch_url)
    assert result.exit_code == 0 and "already exists" in result.output

    result = run("-q", "eval", "--index", "cli-small", "--beir", str(sample_dir), "--url", opensearch_url, "--json",
                 "--results-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    # 40 documents of 1400 judged: most queries find nothing relevant (pinned, deterministic).
    assert record["queries"] == 225 and record["metrics"]["ndcg@10"] == pytest.approx(CLI_SMALL_NDCG, abs=0.002)
    assert json.loads(next((tmp_path / "runs").glob("cli-small-*.json")).read_text())["metrics"] == record["metrics"]
    result = run("-q", "eval", "--index", "cli-small", "--url", opensearch_url)
    assert result.exit_code == 1 and "give --beir, or both --queries and --qrels" in result.output

    # BM25, SPLADE and hybrid side by side: one table, three differences, the same SPLADE numbers.
    result = run("-q", "eval", "--index", "cli-small", "--beir", str(sample_dir), "--url", opensearch_url, "--compare",
                 "--results-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("225 queries, index 'cli-small', k=100; self-hits ")
    assert lines[2].split() == ["metric", "bm25", "splade", "hybrid"]
    assert float(lines[4].split()[2]) == pytest.approx(record["metrics"]["ndcg@10"], abs=1e-4)
    assert [line.split(":")[0].strip() for line in lines if " wins / " in line] == [
        "splade - bm25", "hybrid - bm25", "hybrid - splade"]
    result = run("-q", "eval", "--index", "cli-small", "--beir", str(sample_dir), "--url", opensearch_url, "--compare",
                 "--exact")
    assert result.exit_code == 2 and "--compare and --exact" in result.output

    # The fusion ingest recorded, measured again without recording it.
    recorded = json.loads(run("-q", "query", "lift", "--index", "cli-small", "--url", opensearch_url, "--hybrid").output
                          .splitlines()[1])
    assert recorded["size"] == 50
    result = run("-q", "calibrate", "--index", "cli-small", "--url", opensearch_url, "--dry-run")
    assert result.exit_code == 0 and result.output.startswith("measured (not recorded): fusion rrf k=10, SPLADE weight ")


def test_credentials_file_is_read_and_never_printed(tmp_path):
    from splade_os.cluster import Credentials, read_credentials

    plain, as_json = tmp_path / "plain", tmp_path / "creds.json"
    plain.write_text("alice:pa:ss\n")
    as_json.write_text('{"user": "bob", "password": "hunter2"}')
    assert read_credentials(str(plain)) == Credentials("alice", "pa:ss")
    assert read_credentials(str(as_json)) == Credentials("bob", "hunter2")
    (tmp_path / "key.json").write_text('{"api_key": "a2V5"}')
    assert read_credentials(str(tmp_path / "key.json")) == Credentials(api_key="a2V5")
    result = run("-q", "search", "lift", "--index", "x", "--url", "http://127.0.0.1:9", "--credentials-file", str(as_json))
    assert result.exit_code == 1 and "hunter2" not in result.output and "cannot reach" in result.output
    (tmp_path / "bad").write_text("no separator")
    result = run("-q", "search", "lift", "--index", "x", "--url", "http://127.0.0.1:9", "--credentials-file",
                 str(tmp_path / "bad"))
    assert result.output == f"Error: {tmp_path / 'bad'}: expected `user:password` on the first line\n"
