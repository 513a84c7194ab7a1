"""The query side, torch-free: a tokenizer and a static table turn text into weighted tokens
(`encoder.QueryEncoder`), and those become the engine's search body (`bodies`), restricted by
filters (`filters`), fused with BM25 (`hybrid`), shaped per engine (`engine`); `hits` holds what
comes back and `options.SearchOptions` how a search is made.

May import: `splade_os.common`, `splade_os.formats`.
"""

from splade_os.query.bodies import (  # noqa: F401 - the query module's names, as before the packages
    DEFAULT_FIELD, DEFAULT_MAX_CLAUSES, ClauseCapWarning, NegativeWeightWarning, Pruning, TwoPhase, bm25_body,
    feature_query, pruned_query, query_body, rescore_clause, sparse_vector_query, weighted_terms)
from splade_os.query.encoder import QueryEncoder, fit_table, idf_table, load_query_table  # noqa: F401
from splade_os.query.options import SearchOptions  # noqa: F401
