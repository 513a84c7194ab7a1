"""Ingest: a corpus streamed through the document encoder into an index, losing nothing, in one
process (`single`) or on a Ray cluster (`ray`), resumable from a checkpoint (`checkpoint`).

May import: `splade_os.common`, `corpus`, `formats`, `query`, `documents`, `bulk`, `models`.
"""

from splade_os.ingest.single import (  # noqa: F401 - the ingest module's names, as before the packages
    IngestOptions, IngestPlan, IngestStats, alias_indexes, alias_targets, ingest, plan_ingest, prune_alias, publish,
    run_pipeline, switch_alias)
