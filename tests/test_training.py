"""Training that helps (issue #15): the validation gate, sparsity by target, a servable query table."""

import json
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from splade_os.cli import cli
from splade_os.ingest import IngestOptions, ingest
from splade_os.training.negatives import MiningOptions, add_hard_negatives
from splade_os.training.pairs import corpus_pairs
from splade_os.query import NegativeWeightWarning
from splade_os.training.trainer import TrainArgs, beir_pairs, split_validation, starting_model, static_table_parameter, train


def _controller(target=None, start_doc_dims=None):
    from sentence_transformers.sparse_encoder.losses import SpladeLoss

    from splade_os.training.callbacks import DocDimsController

    loss = SpladeLoss(None, SimpleNamespace(compute_loss_from_embeddings=None), document_regularizer_weight=0.0,
                      query_regularizer_weight=0.0)
    flops = SimpleNamespace(active_dims=None)
    controller = DocDimsController(loss, flops, target=target)
    controller.start_doc_dims = start_doc_dims
    return controller, flops, loss


def _steps(controller, flops, dims):
    for step, value in enumerate(dims, 1):
        flops.active_dims = value
        controller.on_step_end(None, SimpleNamespace(global_step=step), None)
        controller.on_step_begin(None, None, None)


def test_the_controller_raises_the_weight_above_the_target_and_lowers_it_below():
    controller, flops, loss = _controller()  # target: the start's dims
    _steps(controller, flops, [100] + [200] * 20)
    assert controller.batch_target == 100
    raised = loss.document_regularizer_weight
    assert raised > 10 * controller.history[0]["weight"]
    _steps(controller, flops, [50] * 20)
    assert loss.document_regularizer_weight < raised / 10
    # Below the target with the weight near zero, it goes negative: activation is rewarded.
    _steps(controller, flops, [50] * 20)
    assert controller.bounds[0] <= loss.document_regularizer_weight < 0
    # Back at the target, the weight settles where it is.
    _steps(controller, flops, [100] * 30)
    assert controller.history[-1]["weight"] == pytest.approx(controller.history[-2]["weight"], rel=1e-3)


def test_the_target_is_scaled_from_real_documents_to_training_batches():
    # Real documents start at 300 dims, training batches (truncated) at 150: a target of 200
    # real dims is 100 batch dims.
    controller, flops, _ = _controller(target=200, start_doc_dims=300)
    _steps(controller, flops, [150])
    assert controller.batch_target == pytest.approx(100)


def _evaluations(keep, rows):
    """Feed KeepBest evaluations of (step, nDCG@10, corpus active dims)."""
    model = SimpleNamespace(state_dict=lambda: {})
    for step, value, dims in rows:
        metrics = {"eval_validation_dot_ndcg@10": value, "eval_validation_corpus_active_dims": dims}
        keep.on_evaluate(None, SimpleNamespace(global_step=step), None, model=model, metrics=metrics)


def test_a_checkpoint_sparser_than_half_the_start_is_never_kept():
    from splade_os.training.callbacks import KeepBest
    from splade_os.training.trainer import _dims_floor

    controller = object()  # target mode; with no target, the floor is half the start's dims
    keep = KeepBest("ndcg@10", min_doc_dims=_dims_floor(TrainArgs("run"), controller))
    _evaluations(keep, [(0, 0.30, 80.0), (10, 0.31, 60.0), (20, 0.40, 39.0), (30, 0.32, 41.0)])
    assert keep.min_doc_dims == 40.0 and keep.too_sparse == [20]
    assert (keep.best_step, keep.best_value) == (30, 0.32)  # 0.40 came with too few dims
    assert _dims_floor(TrainArgs("run", target_doc_dims=30), controller) == 15.0  # asked for: half the target
    assert _dims_floor(TrainArgs("run", min_doc_dims_fraction=None), controller) is None
    assert _dims_floor(TrainArgs("run", document_regularizer_weight=1e-3), None) is None  # a fixed weight


def test_validation_holds_out_whole_documents(sample_dir):
    rows = beir_pairs(sample_dir, pairs="ict", with_ids=True)
    rest, held = split_validation(rows, queries=50)
    assert len(held) == 50 and len(rest) == len(rows) - 50
    assert not set(held["positive_id"]) & set(rest["positive_id"])


@pytest.mark.slow
def test_a_worse_model_is_refused_and_said_so(sample_dir, tmp_path):
    """A destructive learning rate makes the model worse: exit status 1, one line, nothing saved; --force saves."""
    base = ["train", "--beir", str(sample_dir), "--init-idf", str(sample_dir / "corpus.jsonl"), "--max-steps", "3",
            "--batch-size", "8", "--max-seq-length", "32", "--lr", "0.05", "--static-lr", "1.0",
            "--validation-queries", "20", "--eval-steps", "3"]
    runner = CliRunner()
    refused = runner.invoke(cli, ["-q", *base, "-o", str(tmp_path / "a")])
    assert refused.exit_code == 1, refused.output
    lines = refused.output.strip().splitlines()
    message = lines[-1]
    assert len(lines) == 1, lines  # -q: no bars (widget examples included), no log lines, only the message
    assert message.startswith("Error: training did not beat the start on 20 validation queries: ndcg@10 ")
    assert "--force" in message and not (tmp_path / "a" / "final").exists()
    record = json.loads((tmp_path / "a" / "splade_os_training.json").read_text())
    validation = record["validation"]
    # Worse, or (the documents collapsing too) no candidate at all: sparser than half the start.
    if validation["too_sparse_steps"]:
        assert validation["best_step"] is None and "checkpoint(s) left out" in message
    else:
        assert validation["best"]["ndcg@10"] < validation["start"]["ndcg@10"]
    assert validation["passed"] is False

    forced = runner.invoke(cli, ["-q", *base, "--force", "-o", str(tmp_path / "b")])
    assert forced.exit_code == 0, forced.output
    final = tmp_path / "b" / "final"
    saved = json.loads((final / "splade_os_training.json").read_text())
    assert saved["validation"]["best_step"] == 3 and "## splade-os validation" in (final / "README.md").read_text()


def _served_weights(body) -> dict:
    """{feature key: weight} of a search body, on either engine."""
    query = body["query"]
    if "sparse_vector" in query:
        return dict(query["sparse_vector"]["query_vector"])
    weights = {}
    for clause in query["bool"]["should"]:
        if "rank_feature" in clause:  # OpenSearch: field.key, boost
            weights[clause["rank_feature"]["field"].split(".", 1)[1]] = clause["rank_feature"]["boost"]
        else:  # Elasticsearch: a boosted term on the sparse_vector field
            (term,) = clause["term"].values()
            weights[term["value"]] = term["boost"]
    return weights


@pytest.mark.slow
def test_the_trained_query_table_is_the_served_one(cluster, sample_dir, tmp_path):
    """A static learning rate that would drive weights negative: the table stays >= 0, and the
    cluster query of the trained model carries exactly sentence-transformers' encode_query weights."""
    from sentence_transformers import SparseEncoder

    from splade_os.models.resolve import resolve_model

    rows = corpus_pairs(sample_dir / "corpus.jsonl", "ict").select(range(48))
    model = starting_model(init_idf=sample_dir / "corpus.jsonl", max_seq_length=32)
    name = static_table_parameter(model)
    start = dict(model.named_parameters())[name].detach().clone().numpy()
    args = TrainArgs(output_dir=tmp_path / "run", batch_size=16, max_steps=3, static_learning_rate=0.5,
                     document_regularizer_weight=0.0, save_steps=1000, logging_steps=1)
    result = train(model, rows, args, show_progress=False)
    trained = resolve_model(str(result.model_dir), show_progress=False)
    table = trained.query_encoder.table
    assert table.min() == 0.0
    # Adam never lands a weight on exactly 0.0: these were clamped, they had gone below zero.
    zeroed = np.flatnonzero((table == 0) & (start > 0))
    assert len(zeroed) > 0
    assert trained.query_encoder.max_length == 512  # training truncation is not saved

    corpus = tmp_path / "small.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl").readlines()[:20]))
    ingest(cluster, corpus, "trained-table", trained, options=IngestOptions(dead_letter=tmp_path / "dead.jsonl"),
           show_progress=False)
    index = cluster.index("trained-table")
    st = SparseEncoder(str(result.model_dir), device="cpu")
    tokens = trained.query_encoder.tokens
    queries = [" ".join(rows[i]["query"] for i in range(3)), "what is the effect of the boundary layer on heat"]
    queries.append(" ".join(tokens[i] for i in zeroed[:5]) + " flow")
    for text in queries:
        with warnings.catch_warnings():
            warnings.simplefilter("error", NegativeWeightWarning)
            body = index.body(text, k=5)
        served = _served_weights(body)
        vector = st.encode_query([text], convert_to_sparse_tensor=True)[0].coalesce()
        ids, values = vector.indices()[0].tolist(), vector.values().tolist()
        expected = {trained.query_encoder.keys[i]: v for i, v in zip(ids, values) if v != 0}
        assert served.keys() == expected.keys(), text
        for key, weight in expected.items():
            assert served[key] == pytest.approx(weight, rel=1e-6), key
        assert any(start[i] != table[i] for i in ids)  # the trained weights, not the start's
    assert len(index.search(queries[1], k=3)) == 3


def test_interpolation_moves_every_weight_back_toward_the_start():
    import torch

    from splade_os.training.trainer import _cpu_state, interpolate

    model = torch.nn.Linear(3, 2)
    start = _cpu_state(model)
    with torch.no_grad():
        model.weight.add_(torch.ones(2, 3))
        model.bias.mul_(-3.0)
    trained = _cpu_state(model)
    interpolate(model, start, 0.25)
    for name, value in model.state_dict().items():
        assert torch.allclose(value, start[name] + 0.25 * (trained[name] - start[name])), name


@pytest.mark.slow
def test_the_gate_judges_the_interpolated_model(sample_dir, tmp_path):
    """--interpolate 0.5: the saved weights lie halfway between the start and the kept checkpoint,
    the query table included (it stays >= 0), and the gate's numbers are the saved model's."""
    from sentence_transformers import SparseEncoder

    from splade_os.training.trainer import validation_evaluator

    rows, held = split_validation(beir_pairs(sample_dir, pairs="ict", with_ids=True), queries=20)
    model = starting_model(init_idf=sample_dir / "corpus.jsonl", max_seq_length=32)
    name = static_table_parameter(model)
    start = dict(model.named_parameters())[name].detach().clone().numpy()
    args = TrainArgs(output_dir=tmp_path / "run", batch_size=8, max_steps=3, eval_steps=3, save_steps=3,
                     static_learning_rate=0.5, learning_rate=1e-4, document_regularizer_weight=0.0,
                     interpolation=0.5, force=True, logging_steps=1)
    result = train(model, rows.select(range(48)), args, evaluator=validation_evaluator(held), show_progress=False)
    checkpoint = SparseEncoder(str(tmp_path / "run" / "checkpoint-3"), device="cpu")
    trained = dict(checkpoint.named_parameters())[name].detach().numpy()
    saved = dict(SparseEncoder(str(result.model_dir), device="cpu").named_parameters())[name].detach().numpy()
    assert np.abs(trained - start).max() > 0.1
    np.testing.assert_allclose(saved, start + 0.5 * (trained - start), rtol=1e-5, atol=1e-6)
    assert saved.min() >= 0.0
    validation = result.validation
    assert validation["interpolation"] == 0.5 and validation["best_step"] == 3
    assert validation["checkpoint"]["ndcg@10"] == validation["history"][-1]["value"]  # step 3, as trained
    assert validation["best"] != validation["checkpoint"] and result.metrics == validation["best"]
    assert "moved 0.5 of the way to step 3's" in (result.model_dir / "README.md").read_text()


@pytest.mark.slow
def test_negatives_mined_on_a_node_are_other_documents(cluster, default_model, sample_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl").readlines()[:60]))
    ingest(cluster, corpus, "mining", default_model, options=IngestOptions(dead_letter=tmp_path / "dead.jsonl"),
           show_progress=False)
    rows = corpus_pairs(corpus, "ict").select(range(20))
    texts = {json.loads(line)["_id"]: json.loads(line) for line in open(corpus)}
    calls = []
    index = cluster.index("mining")
    original = cluster.request

    def counting(method, path, *a, **k):
        calls.append(path)
        return original(method, path, *a, **k)

    cluster.request = counting
    try:
        for method in ("bm25", "splade"):
            calls.clear()
            mined, stats = add_hard_negatives(rows, index, MiningOptions(method, count=2, skip=1, batch=8))
            assert sum(path.endswith("/_msearch") for path in calls) == 3 and stats.kept == len(mined) >= 18
            for row in mined:
                own = texts[row["positive_id"]]
                own_text = f"{own['title']} {own['text']}" if own["title"] else own["text"]
                assert row["negative_1"] != own_text and row["negative_2"] != own_text
                assert row["negative_1"] != row["negative_2"]
    finally:
        cluster.request = original
