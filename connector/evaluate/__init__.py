"""Evaluation: an index on judged queries with sentence-transformers' metrics, and the exact
in-memory dot product beside it (`run`).

May import: `splade_os.common`, `corpus`, `formats`, `query`, `documents`, `bulk`, `models`.
"""

from splade_os.evaluate.run import (  # noqa: F401 - the evaluate module's names, as before the packages
    GRADED_NDCG, EvalResult, evaluate_exact, evaluate_index, evaluated_queries, exact_doc_vectors, exact_run,
    retrieval_metrics)
