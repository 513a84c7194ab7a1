"""The handles an app holds: a cluster (`client`: `Cluster`, `connect`) and an index on it
(`index`: `SpladeIndex`: create, search, ingest, evaluate), and copying an index (`reindex`).
They sit above every task they offer, so the tasks below take a cluster and an index as objects
and never import this package.

May import: every package but `training` and `cli`.
"""

from splade_os.cluster.client import Cluster, Credentials, connect, read_credentials, redact_url, split_urls  # noqa: F401
