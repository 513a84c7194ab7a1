"""Asking a local node over loopback HTTP whether it is up: ports and cluster health.

Only the standard library (urllib), so starting a node needs no engine client.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.request
from typing import Optional

HEALTHY = ("green", "yellow")

# Requests to our own loopback node must never go through an HTTP proxy from the environment
# (http_proxy is often set for package registries, no_proxy often lacks 127.0.0.1).
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(avoid: tuple = ()) -> int:
    """A loopback port that was free a moment ago (the node may lose a race for it; see process.py)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def cluster_health(url: str, timeout: float = 2.0, context: Optional[ssl.SSLContext] = None,
                   headers: Optional[dict] = None) -> Optional[dict]:
    """The answer of `GET /_cluster/health`, or None when the node does not answer (yet).

    `GET /` is no readiness probe: the Elasticsearch zip has no handler for it (HTTP 405).
    A node that has not joined a cluster holds the request until its master timeout; the short
    client timeout turns that into None too. A secured node (https) needs `context` (its CA) and
    `headers` (its credentials).
    """
    opener = OPENER if context is None else urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(urllib.request.Request(url + "/_cluster/health", headers=headers or {}),
                         timeout=timeout) as response:
            answer = json.load(response)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def health(url: str, timeout: float = 2.0, **access) -> Optional[str]:
    """Cluster health status ("green", "yellow", "red"), or None when the node does not answer
    (`access`: `context` and `headers` for a secured node, as `cluster_health` takes them)."""
    answer = cluster_health(url, timeout, **access)
    return answer.get("status") if answer is not None else None
