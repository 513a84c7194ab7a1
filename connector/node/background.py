"""The background node: one long-lived local node (or cluster) per cache folder and engine.

It is detached from the process that started it, so several `splade-os` commands in a row share
it, and its data (`cache_dir()/node/<engine>/cluster-<N>/node-<i>/data`; for root see
`splade_os.node.account.node_root`) survives restarts. What runs is recorded in
`cache_dir()/node/<engine>/state.json`; a lock file beside it serialises concurrent starts and
stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import List, Optional

from splade_os.common.cache import cache_dir
from splade_os.common.errors import NodeError
from splade_os.common.files import atomic_write
from .account import node_account, node_root
from .engines import node_engine
from .health import HEALTHY, health
from .process import LocalCluster, signal_group


def _engine_dir(spec) -> Path:
    path = cache_dir() / "node" / spec.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_state(spec) -> Optional[dict]:
    try:
        state = json.loads((_engine_dir(spec) / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("nodes"), list) else None


def _write_state(spec, state: dict) -> None:
    atomic_write(_engine_dir(spec) / "state.json", json.dumps(state, indent=2) + "\n")


def _remove_state(spec) -> None:
    (_engine_dir(spec) / "state.json").unlink(missing_ok=True)


def _is_node_process(pid, spec) -> bool:
    """True when pid is a live node process of the engine (not a zombie, not a recycled pid)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no /proc (macOS): trust the pid
    try:
        # Empty for a zombie; names the start script while starting, the engine's classes after exec.
        return spec.process_name.encode() in cmdline.read_bytes().lower()
    except OSError:
        return False


@contextlib.contextmanager
def _state_lock(spec):
    """Serialise background start/stop between concurrent CLI invocations."""
    import fcntl  # Unix only, like the rest of the background machinery

    with open(_engine_dir(spec) / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _live(spec, state: dict) -> List[dict]:
    return [node for node in state["nodes"] if isinstance(node, dict) and _is_node_process(node.get("pid"), spec)]


def running_url(engine="opensearch") -> Optional[str]:
    """URL of the engine's background node if it is alive and answering, else None.

    For several nodes: the URLs of those answering, joined by commas (`splade_os.cluster.connect`
    takes that). State left by nodes that are all gone is removed; nodes that are alive but not
    answering yet (still starting) keep theirs.
    """
    spec = node_engine(engine)
    state = _read_state(spec)
    if state is None:
        return None
    live = _live(spec, state)
    if not live:
        _remove_state(spec)
        return None
    urls = [node["url"] for node in live if isinstance(node.get("url"), str) and health(node["url"]) in HEALTHY]
    return ",".join(urls) or None


def start_background(engine="opensearch", nodes: Optional[int] = None, version: Optional[str] = None,
                     port: Optional[int] = None, show_progress: bool = True) -> str:
    """Return the URL of the engine's background node, starting it (detached) when none runs.

    Args:
        engine: "opensearch" or "elasticsearch".
        nodes: how many nodes; None reuses whatever runs, else starts one.
        version: the engine version (default: the spec's); None reuses whatever runs, and a running
            node of another version than one asked for is an error. Each version keeps its own data.
        port: the HTTP port of the (first) node when it starts.
        show_progress: progress lines on stderr.

    Returns:
        The URL; for several nodes, their URLs joined by commas.

    Raises:
        NodeError: it cannot start, a running one does not answer, or it runs with another node count.
    """
    spec = node_engine(engine)
    with _state_lock(spec):
        url = running_url(spec)
        state = _read_state(spec)
        if state is not None and url is None:
            raise NodeError(f"a background {spec.label} node (pid {_live(spec, state)[0].get('pid')}) is running "
                            f"but not answering; stop it with 'splade-os node stop --engine {spec.name}' and start again")
        if url is not None:
            if version is not None and version != state.get("version"):
                raise NodeError(f"a background {spec.label} {state.get('version')} node is running at {url}; stop it "
                                f"with 'splade-os node stop --engine {spec.name}' to start {version}")
            if nodes is not None and nodes != len(state["nodes"]):
                raise NodeError(f"a background {spec.label} cluster of {len(state['nodes'])} node(s) is running "
                                f"at {url}; stop it with 'splade-os node stop --engine {spec.name}' to start "
                                f"{nodes} node(s)")
            return url
        count = nodes or 1
        # In the cache, except when we are root and the node user cannot enter the cache. Another
        # version keeps its data apart: a node cannot read indexes a newer version wrote.
        version = version or spec.version
        folder = f"cluster-{count}" if version == spec.version else f"cluster-{count}-{version}"
        root = node_root(node_account(spec.label)) / spec.name / folder
        local = LocalCluster(spec, nodes=count, version=version, port=port, show_progress=show_progress,
                             work_dir=root, detach=True).start()
        _write_state(spec, {
            "engine": spec.name,
            "version": local.version,
            "home": str(local.nodes[0].home),
            "nodes": [{"pid": node.pid, "url": node.url, "log": str(node.log_path)} for node in local.nodes],
        })
        return ",".join(local.urls)


def stop_background(engine="opensearch") -> bool:
    """Stop the engine's background node(s); return True if one was running. The data is kept."""
    spec = node_engine(engine)
    with _state_lock(spec):
        state = _read_state(spec)
        if state is None:
            return False
        pids = [node.get("pid") for node in _live(spec, state)]
        for pid in pids:
            signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while any(_is_node_process(pid, spec) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            if _is_node_process(pid, spec):
                signal_group(pid, signal.SIGKILL)
        while any(_is_node_process(pid, spec) for pid in pids):
            time.sleep(0.2)
        _remove_state(spec)
        return bool(pids)
