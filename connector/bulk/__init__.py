"""Sending documents to a cluster and losing none: byte-capped bulk requests with retries and
backoff (`requests`), and encoded documents turned into bulk actions with their fields
(`sender`). The cluster is any object with `request(...)` (a `splade_os.cluster.Cluster`).

May import: `splade_os.common`, `splade_os.corpus`, `splade_os.documents`.
"""

from splade_os.bulk.requests import (  # noqa: F401 - the bulk module's names, as before the packages
    DEFAULT_MAX_BYTES, BulkDeadlineError, BulkLines, BulkOptions, RetryPolicy, chunk_actions, index_action,
    request_bytes, send_chunk, source_bytes)
