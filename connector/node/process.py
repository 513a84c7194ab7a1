"""Running nodes: `LocalNode` (one node) and `LocalCluster` (N nodes on loopback, one JVM each).

Each node runs from the cached distribution with its own config (a fresh copy each start), logs
and data folder, on 127.0.0.1 ports picked when it starts. Picking a port (bind to port 0, close)
races with other processes, so a node whose log says it could not bind is started once more with
fresh ports. A node that fails is never left behind half-started, and the error carries the gist
of its log on one line with the log's path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from splade_os.common.cache import cache_dir
from splade_os.common.errors import InputError, NodeError
from .account import give_to, home_for, node_account, reachable_as
from .distribution import ensure_distribution
from .engines import node_engine
from .health import HEALTHY, cluster_health, free_port, health, port_open
from .java import find_java_home
from .logs import bind_failed, progress, summarise_log

CLUSTER_NAME = "splade-os"
SINGLE_NODE = {"discovery.type": "single-node"}
# The JIT's first tier only: a node starts with about half the CPU time (measured in
# benchmarks/node_start.py) and runs slower afterwards; for throw-away nodes on few cores.
QUICK_START = ("-XX:TieredStopAtLevel=1",)


class _BindFailure(Exception):
    """The node could not bind a port we picked; it is started again with new ports."""


def signal_group(pid: int, sig: int) -> None:
    """Signal a detached node's whole process group (it leads its own session), else just it."""
    try:
        os.killpg(pid, sig)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


class LocalNode:
    """One OpenSearch or Elasticsearch node on 127.0.0.1, run from the cached distribution.

    `work_dir` (config and logs) defaults to a fresh temp dir outside the repo that `stop`
    removes; `data_dir` defaults to `work_dir/data`; a `data_dir` or `work_dir` given by the caller
    is never removed. `detach=True` starts the node in its own session so it outlives this process
    (the background node). When we are root, the node runs as an unprivileged user that owns
    work_dir and data_dir (see `splade_os.node.account`). `java_options` are extra JVM options
    (e.g. `QUICK_START`); the engine's java-opts variable from the environment comes last and wins.
    `security` (a `splade_os.node.security.NodeSecurity`, Elasticsearch only) turns security on:
    TLS on HTTP (the URL is https), users, API keys and client certificates.

    Example:
        >>> with LocalNode("elasticsearch") as node:
        ...     cluster = splade_os.cluster.connect(node.url)
    """

    def __init__(self, engine="opensearch", version: Optional[str] = None, port: Optional[int] = None,
                 heap: str = "512m", data_dir=None, show_progress: bool = True, *, work_dir=None,
                 detach: bool = False, transport_port: Optional[int] = None, name: str = "splade-os-local",
                 java_options: Sequence[str] = (), security=None):
        self.spec = node_engine(engine)
        if security is not None and self.spec.name != "elasticsearch":
            raise InputError(f"a secured local node is an Elasticsearch node, not {self.spec.label}")
        self.security = security
        self.version = version or self.spec.version
        self.requested_port = port
        self.requested_transport_port = transport_port
        self.heap = heap
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        self.show_progress = show_progress
        self.work_dir = Path(work_dir).expanduser().resolve() if work_dir is not None else None
        self.detach = detach
        self.name = name
        self.java_options = tuple(java_options)
        # Discovery settings; LocalCluster replaces them with the seed hosts and initial masters.
        self.discovery: dict = dict(SINGLE_NODE)
        # Whether the work dir goes away after a failure (then the log is copied to the cache).
        self.temporary = work_dir is None
        self.port: Optional[int] = None
        self.transport_port: Optional[int] = None
        self.home: Optional[Path] = None
        self.log_path: Optional[Path] = None
        self.process: Optional[subprocess.Popen] = None
        self._temp_dir: Optional[Path] = None
        self._account = None
        self._java_home: Optional[Path] = None
        self._distribution_home: Optional[Path] = None

    def __repr__(self) -> str:
        return f"LocalNode({self.spec.name!r}, {self.name!r}, port={self.port})"

    @property
    def url(self) -> str:
        """Base URL of the node, e.g. `http://127.0.0.1:9200`."""
        if self.port is None:
            raise NodeError(f"the local {self.spec.label} node has not been started")
        scheme = "https" if self.security is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        """Process id of the node (OpenSearch: the JVM; Elasticsearch: its launcher JVM)."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        """Whether the node's process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 300) -> "LocalNode":
        """Start the node and wait until its cluster health is green or yellow.

        Raises:
            NodeError: the node exited or was not healthy within `timeout` seconds (with the gist
                of its log and the log's path), or it cannot be fetched or run.
        """
        if not self.running:
            start_nodes([self], [self], timeout, lambda: dict(SINGLE_NODE))
        return self

    def stop(self) -> None:
        """Stop the node (SIGTERM, then SIGKILL after 30s) and remove its temp dir.

        Directories the caller passed in (`data_dir`, `work_dir`) are kept.
        """
        self._kill_process()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> "LocalNode":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- starting ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Fetch the distribution, choose the JDK, check that the node user can run them."""
        spec = self.spec
        self._account = node_account(spec.label)
        home = ensure_distribution(spec, self.version, self.show_progress)
        self.home = self._distribution_home = home_for(self._account, home, spec.script(home))
        self._java_home = find_java_home(spec, *spec.java_range(self.version))
        if not reachable_as(self._account, self._java_home / "bin" / "java"):
            raise NodeError(f"the node runs as an unprivileged user, who cannot run {self._java_home}/bin/java: "
                            f"set {spec.java_home_var} to a JDK outside /root")
        for port in (self.requested_port, self.requested_transport_port):
            if port is not None and port_open(port):
                raise NodeError(f"port {port} on 127.0.0.1 is already in use; choose another port")

    def _launch(self) -> None:
        """Write this start's config and start the process (ports and discovery are set)."""
        if self.work_dir is not None:
            work = self.work_dir
            work.mkdir(parents=True, exist_ok=True)
        else:
            # The system temp dir, never the current dir: the node must not write into the repo.
            work = self._temp_dir = Path(tempfile.mkdtemp(prefix=f"splade-os-{self.spec.name}-"))
        if self.security is not None:  # a home of its own: the distribution's folders and a plugin
            self.home = self.security.node_home(self._distribution_home, work / "home")
        config, logs = work / "config", work / "logs"
        data = self.data_dir or work / "data"
        # A fresh copy of the distribution's config each start, so settings never go stale.
        shutil.rmtree(config, ignore_errors=True)
        shutil.copytree(self.home / "config", config)
        if self.security is not None:
            self.security.install(config)
        logs.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        self._write_settings(config, logs, data)
        if not self.spec.jvm_files_in_logs:
            _redirect_jvm_files(config, logs)
        # As root, the node writes its keystore into config/ and its files into logs/ and data/.
        for path in (work, data):
            give_to(self._account, path)
            if not reachable_as(self._account, path):
                raise NodeError(f"the unprivileged node user cannot reach {path}: choose a directory outside /root")
        self.log_path = work / "node.log"
        progress(self.show_progress, f"starting {self.spec.label} {self.version} ({self.name}) on port "
                                     f"{self.port} (log: {self.log_path})")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.spec.script(self.home))],
                cwd=str(self.home),  # jvm.options has paths relative to the home (the agent jar)
                env=self._environment(config),
                stdin=subprocess.DEVNULL,  # no terminal: the script would prompt for a keystore password
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
                user=self._account[0] if self._account else None,
                group=self._account[1] if self._account else None,
                extra_groups=[] if self._account else None,
            )

    def _environment(self, config: Path) -> dict:
        spec = self.spec
        env = dict(os.environ)
        env[spec.java_home_var] = str(self._java_home)
        env[spec.home_var] = str(self.home)
        env[spec.conf_var] = str(config)
        # These come after jvm.options (OpenSearch's says -Xms1g -Xmx1g), so they win; options the
        # user put in the environment come last so they can still override ours.
        options = [f"-Xms{self.heap}", f"-Xmx{self.heap}", *self.java_options, os.environ.get(spec.java_opts_var, "")]
        env[spec.java_opts_var] = " ".join(options).strip()
        return env

    def _write_settings(self, config: Path, logs: Path, data: Path) -> None:
        settings = {
            "cluster.name": CLUSTER_NAME,
            "node.name": self.name,
            **self.discovery,
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            "path.data": str(data),
            "path.logs": str(logs),
            # A nearly full developer disk would otherwise make new indexes unassignable.
            "cluster.routing.allocation.disk.threshold_enabled": False,
            **self.spec.settings,
            **(self.security.settings if self.security is not None else {}),
        }
        # JSON scalars and lists are valid YAML and quote paths safely.
        text = "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
        (config / self.spec.config_file).write_text(text)

    def _poll(self, retry_on_bind_failure: bool) -> bool:
        """True once the node is healthy; raises when it exited (`_BindFailure` for a port race)."""
        code = self.process.poll()
        if code is not None:
            if retry_on_bind_failure and bind_failed(self.log_path):
                raise _BindFailure()
            raise self._failure(f"{self.spec.label} ({self.name}) exited with code {code} before it was healthy")
        return health(self.url, **(self.security.health_access() if self.security is not None else {})) in HEALTHY

    def _failure(self, what: str) -> NodeError:
        """A NodeError with the gist of the node log and where to read all of it."""
        summary = summarise_log(self.log_path)
        log = self.log_path
        if self.temporary:
            # The temp dir is removed with the failed node; keep its log where it can be read.
            kept = cache_dir() / f"last-{self.spec.name}-failure.log"
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_path, kept)
                log = kept
        return NodeError(f"{what}: {summary} (log: {log})")

    # -- stopping ---------------------------------------------------------------------------

    def _terminate(self) -> None:
        """Ask the node to stop (SIGTERM), without waiting."""
        if self.running:
            if self.detach:
                signal_group(self.process.pid, signal.SIGTERM)
            else:
                self.process.terminate()

    def _kill_process(self) -> None:
        """SIGTERM the node, wait for it, SIGKILL it if it does not go."""
        self._terminate()
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if self.detach:
                signal_group(process.pid, signal.SIGKILL)
            else:
                process.kill()  # Elasticsearch's server JVM exits when its launcher is gone
            process.wait(timeout=30)


def _redirect_jvm_files(config: Path, logs: Path) -> None:
    # OpenSearch's jvm.options writes gc logs, crash files and heap dumps relative to the shared
    # distribution home; point them at this node's own logs dir instead. The start script splits
    # options on whitespace, so a path with spaces must keep the defaults.
    if re.search(r"\s", str(logs)):
        return
    options = config / "jvm.options"
    text = options.read_text()
    text = text.replace("file=logs/", f"file={logs}/").replace("ErrorFile=logs/", f"ErrorFile={logs}/")
    text = text.replace("HeapDumpPath=data", f"HeapDumpPath={logs}")
    options.write_text(text)


def _pick_ports(pending: List[LocalNode], everyone: List[LocalNode]) -> None:
    """Give each pending node its HTTP and transport ports (the requested ones, else free ones)."""
    taken = {port for node in everyone if node not in pending for port in (node.port, node.transport_port) if port}
    for node in pending:
        node.port = node.requested_port or free_port(avoid=tuple(taken))
        taken.add(node.port)
        node.transport_port = node.requested_transport_port or free_port(avoid=tuple(taken))
        taken.add(node.transport_port)


def start_nodes(pending: List[LocalNode], everyone: List[LocalNode], timeout: float,
                discovery: Callable[[], dict]) -> None:
    """Start `pending` (members of `everyone`) together and wait until each one is healthy.

    The members of a new cluster must all run before any of them is healthy (a master needs a
    quorum of them), so all are launched first and then waited for. A node that lost a port race
    is started once more with fresh ports. On any failure, or Ctrl-C, every node this call started
    is stopped again.

    Args:
        pending: the nodes to start.
        everyone: all nodes of the cluster (their ports are avoided and listed as seeds).
        timeout: seconds for all of them together.
        discovery: the discovery settings, asked once the ports are known.
    """
    for node in pending:
        node._prepare()
    began = time.monotonic()
    deadline, todo = began + timeout, list(pending)
    try:
        for attempt in (1, 2):
            _pick_ports(todo, everyone)
            settings = discovery()
            for node in todo:
                node.discovery = settings
                node._launch()
            todo = _wait_healthy(todo, deadline, timeout, retry_on_bind_failure=attempt == 1)
            if not todo:
                break
    except BaseException:
        # Never leave a half-started node behind (Ctrl-C, timeout, crash).
        for node in pending:
            node.stop()
        raise
    for node in pending:
        progress(node.show_progress, f"{node.spec.label} {node.version} ({node.name}) is up at {node.url} "
                                     f"({time.monotonic() - began:.1f}s)")


def _wait_healthy(nodes: List[LocalNode], deadline: float, timeout: float,
                  retry_on_bind_failure: bool) -> List[LocalNode]:
    """Wait until every node is healthy; return (stopped) those that could not bind their ports."""
    waiting, rebind = list(nodes), []
    while waiting:
        for node in list(waiting):
            try:
                ready = node._poll(retry_on_bind_failure)
            except _BindFailure:
                node.stop()
                ready = True
                rebind.append(node)
            if ready:
                waiting.remove(node)
        if waiting and time.monotonic() > deadline:
            node = waiting[0]
            raise node._failure(f"{node.spec.label} ({node.name}) was not healthy after {timeout:.0f}s")
        if waiting:
            time.sleep(0.5)
    return rebind


class LocalCluster:
    """N nodes of one engine on 127.0.0.1 forming one cluster: every node master-eligible and data.

    Each node is its own JVM with a small heap, loopback HTTP and transport ports, the transport
    ports of all nodes as `discovery.seed_hosts`, and all node names as the initial masters. One
    node is a single-node cluster. Nodes can be stopped and started again (same ports, same data)
    while the others keep serving.

    Args:
        engine: "opensearch" or "elasticsearch".
        nodes: how many nodes.
        version: the engine version (default: the spec's).
        heap: JVM heap of each node.
        port: the HTTP port of the first node (default: a free one).
        show_progress: progress lines on stderr.
        work_dir: the folder holding `node-<i>/` (config, logs, data) of each node; default a temp
            dir that `stop` removes.
        detach: start the nodes in their own sessions, so they outlive this process.
        java_options: extra JVM options of every node (e.g. `QUICK_START`).

    Example:
        >>> with LocalCluster("opensearch", nodes=3) as local:
        ...     cluster = splade_os.cluster.connect(",".join(local.urls))
        ...     local.stop_node(1)
    """

    def __init__(self, engine="opensearch", nodes: int = 3, version: Optional[str] = None, heap: str = "512m",
                 port: Optional[int] = None, show_progress: bool = True, *, work_dir=None, detach: bool = False,
                 java_options: Sequence[str] = ()):
        if not isinstance(nodes, int) or nodes < 1:
            raise InputError(f"nodes={nodes!r}: a local cluster needs at least 1 node")
        self.spec = node_engine(engine)
        self.size = nodes
        self.version = version or self.spec.version
        self.heap, self.port, self.show_progress, self.detach = heap, port, show_progress, detach
        self.java_options = tuple(java_options)
        self.work_dir = Path(work_dir).expanduser().resolve() if work_dir is not None else None
        self.nodes: List[LocalNode] = []
        self._temp_dir: Optional[Path] = None

    def __repr__(self) -> str:
        return f"LocalCluster({self.spec.name!r}, nodes={self.size})"

    @property
    def urls(self) -> List[str]:
        """The HTTP URL of every node, running or stopped, in node order."""
        if not self.nodes:
            raise NodeError(f"the local {self.spec.label} cluster has not been started")
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """The first node's URL."""
        return self.urls[0]

    def start(self, timeout: float = 300) -> "LocalCluster":
        """Start every node and wait until all have joined and the cluster is green or yellow.

        Raises:
            NodeError: a node exited or the cluster did not form within `timeout` seconds.
        """
        if self.nodes and any(node.running for node in self.nodes):
            return self
        root = self.work_dir
        if root is None:
            root = self._temp_dir = Path(tempfile.mkdtemp(prefix=f"splade-os-{self.spec.name}-cluster-"))
            root.chmod(0o755)  # the node user must enter it to reach its node-<i> folder
        self.nodes = [self._member(root, i) for i in range(self.size)]
        try:
            start_nodes(self.nodes, self.nodes, timeout, self._discovery)
            self._wait_for_nodes(self.size, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop_node(self, i: int) -> None:
        """Stop node `i` (its folder and data are kept, so `start_node(i)` brings it back)."""
        self._node(i).stop()

    def start_node(self, i: int, timeout: float = 180) -> None:
        """Start node `i` again on its old ports and wait until it has joined the cluster."""
        node = self._node(i)
        if node.running:
            return
        # The same ports, so every URL a client was given stays valid.
        node.requested_port, node.requested_transport_port = node.port, node.transport_port
        start_nodes([node], self.nodes, timeout, self._discovery)
        self._wait_for_nodes(sum(member.running for member in self.nodes), timeout)

    def stop(self) -> None:
        """Stop every node and remove the temp dir (a `work_dir` given by the caller is kept)."""
        for node in self.nodes:
            node._terminate()  # all at once; then wait for each
        for node in self.nodes:
            node.stop()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _member(self, root: Path, i: int) -> LocalNode:
        node = LocalNode(self.spec, self.version, port=self.port if i == 0 else None, heap=self.heap,
                         show_progress=self.show_progress, work_dir=root / f"node-{i}", detach=self.detach,
                         name=f"splade-os-{i}", java_options=self.java_options)
        node.temporary = self._temp_dir is not None
        return node

    def _node(self, i: int) -> LocalNode:
        if not 0 <= i < len(self.nodes):
            raise InputError(f"node {i}: the local cluster has nodes 0 to {len(self.nodes) - 1}")
        return self.nodes[i]

    def _discovery(self) -> dict:
        if self.size == 1:
            return dict(SINGLE_NODE)
        return {
            "discovery.seed_hosts": [f"127.0.0.1:{node.transport_port}" for node in self.nodes],
            self.spec.initial_masters: [node.name for node in self.nodes],
        }

    def _wait_for_nodes(self, count: int, timeout: float) -> None:
        """Wait until a running node sees `count` nodes in a green or yellow cluster."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                answer = cluster_health(node.url) if node.running else None
                if answer and answer.get("number_of_nodes") == count and answer.get("status") in HEALTHY:
                    return
            if time.monotonic() > deadline:
                running = next((node for node in self.nodes if node.running), self.nodes[0])
                raise running._failure(f"the local {self.spec.label} cluster did not reach {count} nodes "
                                       f"in {timeout:.0f}s")
            time.sleep(0.5)
