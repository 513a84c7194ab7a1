"""Local search nodes, so splade-os works without a cluster of its own.

* `LocalNode`: one throw-away node (config, logs and by default data in a temp dir), for tests
  and scripts; a context manager.
* `LocalCluster`: N nodes on loopback forming one cluster; nodes can be stopped and started.
* `start_background` / `running_url` / `stop_background`: one long-lived node (or cluster) per
  cache folder and engine, detached from the command that started it (`splade-os node`).

Engines: OpenSearch 3.5.0 and Elasticsearch 8.19.21, each the plain "integ-test" zip from Maven
Central (no bundled JDK, no security: plain HTTP on 127.0.0.1; `NodeSecurity` turns it on for an
Elasticsearch node, for tests), fetched with `mvn` into
`cache_dir()/dist`; both need a JDK 21+. Other versions run too (`NodeEngine.versions` lists
the tested ones: OpenSearch 2.19, on Java 17-23 with mapper-extras added to its zip, and 3.8). Both refuse to run as root: as root, the node runs as
`nobody` (or `$SPLADE_OS_NODE_USER`). Only the standard library talks to the nodes (urllib).
See docs/nodes.md.
"""

from .background import running_url, start_background, stop_background
from .distribution import ensure_distribution
from .engines import DEFAULT_ENGINE, ELASTICSEARCH_NODE, NODE_ENGINES, OPENSEARCH_NODE, NodeEngine, node_engine
from .java import find_java_home
from .process import QUICK_START, LocalCluster, LocalNode
from .security import NodeSecurity

__all__ = [
    "DEFAULT_ENGINE", "ELASTICSEARCH_NODE", "NODE_ENGINES", "OPENSEARCH_NODE", "LocalCluster", "LocalNode",
    "NodeEngine", "NodeSecurity", "QUICK_START", "ensure_distribution", "find_java_home", "node_engine", "running_url", "start_background",
    "stop_background",
]
