"""Fetch and run a local OpenSearch node, so splade-os works without a cluster of its own.

Two ways to use it:

* ``LocalNode``: a throw-away node (config, logs and by default data in a temp dir), for
  tests and scripts; use it as a context manager.
* ``start_background`` / ``running_url`` / ``stop_background``: one long-lived node per
  cache dir, detached from the CLI that started it, with persistent data under
  ``cache_dir()/node/data`` so ingested indexes survive between CLI invocations.

The distribution is the plain OpenSearch zip (no bundled JDK, no security plugin, so the
node speaks plain HTTP on 127.0.0.1) fetched from Maven with ``mvn`` and cached under
``cache_dir()/dist``. It needs a JDK 21+, found by ``find_java_home``.

OpenSearch refuses to run as root. When this module runs as root (containers, CI) the node
runs as the unprivileged user ``nobody`` (or ``$SPLADE_OS_NODE_USER``) instead. That user
cannot enter ``/root``, so for root the files the node itself reads and writes (a
hard-linked copy of the distribution, the background node's data) live under
``/var/tmp/splade-os-root`` unless ``$SPLADE_OS_CACHE`` points somewhere it can reach.

The module itself uses only the standard library (no opensearch-py): it talks to the node
with urllib.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from .cache import cache_dir
from .errors import NodeError

DEFAULT_VERSION = "3.5.0"

_ARTIFACT = "org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip"
_CLUSTER_NAME = "splade-os"
_NODE_NAME = "splade-os-local"
_JVM_DIR = Path("/usr/lib/jvm")
# Markers in the node log that mean "a port we picked was taken in the meantime".
_BIND_FAILURE_MARKERS = ("BindTransportException", "BindHttpException", "Address already in use")
_HEALTHY = ("green", "yellow")

# Requests to our own loopback node must never go through an HTTP proxy from the
# environment (http_proxy is often set for package registries, no_proxy often lacks 127.0.0.1).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _progress(show: bool, message: str) -> None:
    if show:
        print(f"[opensearch-node] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Distribution


def ensure_distribution(version: str = DEFAULT_VERSION, show_progress: bool = True) -> Path:
    """Return the unpacked ``opensearch-<version>`` home under ``cache_dir()/dist``.

    Downloads the zip with Maven when it is not cached yet, then unpacks it. Both steps
    write into a temp dir beside the target and rename at the end, so an interrupted run
    never leaves a half-written distribution that a later run would trust.
    Raises NodeError when mvn is missing or the download or the zip is bad.
    """
    dist = cache_dir() / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    home = dist / f"opensearch-{version}"
    if (home / "bin" / "opensearch").is_file():
        return home
    archive = dist / f"opensearch-{version}.zip"
    if not archive.is_file():
        _download(version, archive, show_progress)
    _unpack(archive, home, show_progress)
    return home


def _download(version: str, archive: Path, show_progress: bool) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NodeError(
            f"cannot download OpenSearch {version}: Maven ('mvn') is not on PATH; install Maven, "
            f"or put opensearch-{version}.zip into {archive.parent}"
        )
    _progress(show_progress, f"downloading OpenSearch {version} with Maven (about 190 MB, once)")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=archive.parent) as tmp:
        command = [
            mvn, "-q", "-B", "dependency:copy",
            f"-Dartifact={_ARTIFACT.format(version=version)}",
            f"-DoutputDirectory={tmp}",
        ]
        try:
            # cwd is the empty temp dir so that no pom.xml around the caller can interfere.
            result = subprocess.run(
                command, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True
            )
        except OSError as exc:
            raise NodeError(f"cannot run Maven to download OpenSearch {version}: {exc}") from None
        fetched = Path(tmp) / f"opensearch-{version}.zip"
        if result.returncode != 0 or not fetched.is_file():
            reason = _first_maven_error(result.stdout + "\n" + result.stderr)
            raise NodeError(f"Maven could not download OpenSearch {version}: {reason}")
        os.replace(fetched, archive)
    _progress(show_progress, f"downloaded {archive}")


def _first_maven_error(output: str) -> str:
    # Maven may colour its output even when it is not a terminal; drop the escape codes.
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in output.splitlines()]
    errors = [line for line in lines if line.startswith("[ERROR]") and line != "[ERROR]"]
    lines = errors or [line for line in lines if line]
    return _shorten(lines[0] if lines else "no output from mvn")


def _unpack(archive: Path, home: Path, show_progress: bool) -> None:
    _progress(show_progress, f"unpacking {archive.name}")
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=home.parent) as tmp:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
                # zipfile does not restore file modes; put back the executable bits the zip
                # recorded (Unix zips keep the mode in the high 16 bits of external_attr).
                for info in zf.infolist():
                    mode = (info.external_attr >> 16) & 0o777
                    if not info.is_dir() and mode & 0o111:
                        target = Path(tmp) / info.filename
                        if target.is_file():
                            target.chmod(mode)
        except zipfile.BadZipFile as exc:
            # A truncated download would otherwise fail the same way forever.
            archive.unlink(missing_ok=True)
            raise NodeError(
                f"{archive} is not a valid zip ({exc}); removed it, run again to re-download"
            ) from None
        unpacked = Path(tmp) / home.name
        if not (unpacked / "bin" / "opensearch").is_file():
            raise NodeError(f"{archive} does not contain {home.name}/bin/opensearch")
        # Also make every Unix script in bin/ executable, in case the zip had no modes at all.
        for script in (unpacked / "bin").iterdir():
            if script.is_file() and script.suffix not in (".bat", ".exe"):
                script.chmod(0o755)
        try:
            os.rename(unpacked, home)
        except OSError:
            # Another process finished unpacking first; its copy is as good as ours.
            if not (home / "bin" / "opensearch").is_file():
                raise NodeError(f"cannot move the unpacked distribution to {home}") from None
    _progress(show_progress, f"OpenSearch home is {home}")


# ---------------------------------------------------------------------------------------
# Java


def _java_major(java_home: Path) -> int | None:
    """Major version of ``java_home/bin/java``, or None when it does not run."""
    java = java_home / "bin" / "java"
    if not java.is_file():
        return None
    try:
        result = subprocess.run(
            [str(java), "-version"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # `java -version` prints e.g. `openjdk version "25.0.3"` or, before Java 9, `"1.8.0_392"`.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def find_java_home(min_version: int = 21) -> Path:
    """Return a JDK home whose java is at least ``min_version``.

    Looks at $OPENSEARCH_JAVA_HOME, then $JAVA_HOME, then the newest JDK in /usr/lib/jvm.
    Raises NodeError, naming what it rejected, when none qualifies.
    """
    rejected = []
    for variable in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        value = os.environ.get(variable)
        if not value:
            continue
        major = _java_major(Path(value).expanduser())
        if major is not None and major >= min_version:
            return Path(value).expanduser()
        found = f"Java {major}" if major is not None else "no working bin/java"
        rejected.append(f"{variable}={value} ({found})")

    best: tuple[int, Path] | None = None
    if _JVM_DIR.is_dir():
        for candidate in sorted(_JVM_DIR.iterdir()):
            major = _java_major(candidate)
            if major is not None and major >= min_version and (best is None or major > best[0]):
                best = (major, candidate)
    if best is not None:
        return best[1]

    detail = f" (rejected {', '.join(rejected)})" if rejected else ""
    raise NodeError(
        f"OpenSearch needs Java {min_version}+ and none was found{detail}: "
        f"install a JDK {min_version}+ and set OPENSEARCH_JAVA_HOME to its directory"
    )


# ---------------------------------------------------------------------------------------
# Small helpers


def _free_port(avoid: tuple[int, ...] = ()) -> int:
    """A loopback port that was free a moment ago (the node may lose a race for it; see start)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _health(url: str, timeout: float = 2.0) -> str | None:
    """Cluster health status ("green", "yellow", "red"), or None when the node does not answer."""
    try:
        with _OPENER.open(url + "/_cluster/health", timeout=timeout) as response:
            return json.load(response).get("status")
    except (OSError, http.client.HTTPException, ValueError):
        return None


def _shorten(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summarise_log(path: Path, lines: int = 20) -> str:
    """The gist of why a node failed, on one line, from its log."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "no log output"
    # Stack frames, blank lines and pointers to other logs say little.
    noise = ("at ", "... ", "For complete error details")
    useful = [
        (number, line.strip())
        for number, line in enumerate(text)
        if line.strip() and not line.strip().startswith(noise)
    ]
    # A fatal error once logging is up is one ERROR line followed by the exception, and then
    # many lines of stack frames and shutdown chatter: so look for it in the whole log.
    for position in range(len(useful) - 1, -1, -1):
        if "][ERROR]" in useful[position][1]:
            picked = [re.sub(r"^\[[^\]]*\]", "", useful[position][1])]
            picked += [line for _, line in useful[position + 1: position + 2]]
            return _shorten(" | ".join(picked))
    # Otherwise (the JVM or the launcher failed before logging started) the last lines tell.
    tail = [line for number, line in useful if number >= len(text) - lines]
    if not tail:
        return "no log output"
    errors = [line for line in tail if re.search(r"Exception|[Ee]rror|could not|failed", line)]
    picked = [errors[0], errors[-1]] if errors else [tail[-1]]
    return _shorten(" | ".join(dict.fromkeys(picked)))


def _signal_group(pid: int, sig: int) -> None:
    """Signal a detached node's whole process group (it leads its own session), else just it."""
    try:
        os.killpg(pid, sig)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


# ---------------------------------------------------------------------------------------
# Running as root: OpenSearch refuses ("can not run opensearch as root"), so drop to a user


_ROOT_RUNTIME_DIR = Path("/var/tmp/splade-os-root")


def _node_account() -> tuple[int, int] | None:
    """(uid, gid) to run the node as when we are root; None means "as ourselves"."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd  # Unix only, and only needed here

    name = os.environ.get("SPLADE_OS_NODE_USER", "nobody")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NodeError(
            f"OpenSearch refuses to run as root and the user {name!r} to run it as does not exist: "
            "set SPLADE_OS_NODE_USER to an unprivileged user"
        ) from None
    if entry.pw_uid == 0:
        raise NodeError(f"SPLADE_OS_NODE_USER={name} is root; OpenSearch needs an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def _reachable_as(account: tuple[int, int] | None, path: Path) -> bool:
    """Whether the node user can read (and, for a dir, enter) path.

    Asked of the system itself by running `test` as that user, so directory modes on
    every parent, groups and ACLs are all taken into account.
    """
    if account is None:
        return True
    uid, gid = account
    check = ["test", "-r", str(path), "-a", "-x", str(path)] if path.is_dir() else ["test", "-r", str(path)]
    try:
        result = subprocess.run(
            check,
            user=uid, group=gid, extra_groups=[],
            stdin=subprocess.DEVNULL, capture_output=True,
        )
    except OSError:
        return False
    return result.returncode == 0


def _runtime_root(account: tuple[int, int] | None) -> Path:
    """Where the node's own files live: cache_dir(), unless the node user cannot reach it."""
    base = cache_dir()
    if _reachable_as(account, base):
        return base
    root = _ROOT_RUNTIME_DIR
    root.mkdir(parents=True, exist_ok=True)
    # A world-writable parent (/var/tmp) means someone else could have made this path first.
    info = os.lstat(root)
    if not os.path.isdir(root) or os.path.islink(root) or info.st_uid != 0:
        raise NodeError(f"{root} is not a root-owned directory; remove it or set SPLADE_OS_CACHE")
    root.chmod(0o755)
    return root


def _link_or_copy(source: str, target: str) -> None:
    # Hard links make the copy free on the same file system; copy across file systems.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _home_for(account: tuple[int, int] | None, home: Path) -> Path:
    """A copy of the distribution home that the node user can read (home itself if it can)."""
    if _reachable_as(account, home / "bin" / "opensearch"):
        return home
    dist = _runtime_root(account) / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    dist.chmod(0o755)
    mirror = dist / home.name
    if (mirror / "bin" / "opensearch").is_file():
        return mirror
    with tempfile.TemporaryDirectory(prefix=".mirror-", dir=dist) as tmp:
        staged = Path(tmp) / home.name
        shutil.copytree(home, staged, symlinks=True, copy_function=_link_or_copy)
        try:
            os.rename(staged, mirror)
        except OSError:
            if not (mirror / "bin" / "opensearch").is_file():
                raise NodeError(f"cannot place a copy of the distribution at {mirror}") from None
    return mirror


def _give_to(account: tuple[int, int] | None, path: Path) -> None:
    """Make path and everything below it owned by the node user, so the node can write there."""
    if account is None:
        return
    uid, gid = account
    for directory, subdirs, files in os.walk(path):
        for name in [directory, *(os.path.join(directory, entry) for entry in subdirs + files)]:
            info = os.lstat(name)
            if (info.st_uid, info.st_gid) != (uid, gid):
                os.lchown(name, uid, gid)


# ---------------------------------------------------------------------------------------
# LocalNode


class _BindFailure(Exception):
    """The node could not bind a port we picked; start retries once with new ports."""


class LocalNode:
    """One OpenSearch node on 127.0.0.1, run from the cached distribution.

    ``work_dir`` (config and logs) defaults to a fresh temp dir outside the repo that
    ``stop`` removes; ``data_dir`` defaults to ``work_dir/data``; a ``data_dir`` or
    ``work_dir`` given by the caller is never removed. ``detach=True`` starts the node in
    its own session so it outlives this process (used by ``start_background``).
    When we are root, the node runs as an unprivileged user that owns work_dir and data_dir.
    """

    def __init__(
        self,
        version: str = DEFAULT_VERSION,
        port: int | None = None,
        heap: str = "512m",
        data_dir: str | Path | None = None,
        show_progress: bool = True,
        *,
        work_dir: str | Path | None = None,
        detach: bool = False,
    ):
        self.version = version
        self.requested_port = port
        self.heap = heap
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        self.show_progress = show_progress
        self.work_dir = Path(work_dir).expanduser().resolve() if work_dir is not None else None
        self.detach = detach
        self.port: int | None = None
        self.home: Path | None = None
        self.log_path: Path | None = None
        self.process: subprocess.Popen | None = None
        self._temp_dir: Path | None = None
        self._account: tuple[int, int] | None = None

    @property
    def url(self) -> str:
        """Base URL of the node, e.g. ``http://127.0.0.1:9200``."""
        if self.port is None:
            raise NodeError("the local OpenSearch node has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the node (the java process, which the start script execs into)."""
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 120) -> "LocalNode":
        """Start the node and wait until its cluster health is green or yellow.

        Raises NodeError with the gist of the node log and the log path when the node
        exits or is not healthy within ``timeout`` seconds.
        """
        if self.process is not None and self.process.poll() is None:
            return self
        self._account = _node_account()
        self.home = _home_for(self._account, ensure_distribution(self.version, self.show_progress))
        java_home = find_java_home()
        if not _reachable_as(self._account, java_home / "bin" / "java"):
            raise NodeError(f"the node runs as an unprivileged user, who cannot run {java_home}/bin/java: "
                            "set OPENSEARCH_JAVA_HOME to a JDK 21+ outside /root")
        if self.requested_port is not None and _port_open(self.requested_port):
            raise NodeError(
                f"port {self.requested_port} on 127.0.0.1 is already in use; choose another port"
            )
        began = time.monotonic()
        # Ports are picked by binding to port 0 and closing, so another process can take
        # one before the node binds it: retry once with fresh ports when that happens.
        for attempt in (1, 2):
            try:
                self._launch(java_home)
                self._wait_healthy(timeout, retry_on_bind_failure=attempt == 1)
                break
            except _BindFailure:
                self._discard_failed_start()
            except BaseException:
                # Never leave a half-started node behind (Ctrl-C, timeout, crash).
                self._discard_failed_start()
                raise
        elapsed = time.monotonic() - began
        _progress(self.show_progress, f"OpenSearch {self.version} is up at {self.url} ({elapsed:.1f}s)")
        return self

    def _launch(self, java_home: Path) -> None:
        self.port = self.requested_port or _free_port()
        transport_port = _free_port(avoid=(self.port,))
        if self.work_dir is not None:
            work = self.work_dir
            work.mkdir(parents=True, exist_ok=True)
        else:
            # The system temp dir, never the current dir: the node must not write into the repo.
            work = self._temp_dir = Path(tempfile.mkdtemp(prefix="splade-os-node-"))
        config, logs = work / "config", work / "logs"
        data = self.data_dir or work / "data"
        # A fresh copy of the distribution's config each start, so settings never go stale.
        shutil.rmtree(config, ignore_errors=True)
        shutil.copytree(self.home / "config", config)
        logs.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        self._write_settings(config, logs, data, transport_port)
        self._redirect_jvm_files(config, logs)
        # As root, the node writes its keystore into config/ and its files into logs/ and data/.
        for path in (work, data):
            _give_to(self._account, path)
            if not _reachable_as(self._account, path):
                raise NodeError(
                    f"the unprivileged node user cannot reach {path}: choose a directory outside /root"
                )

        env = dict(os.environ)
        env["OPENSEARCH_JAVA_HOME"] = str(java_home)
        env["OPENSEARCH_HOME"] = str(self.home)
        env["OPENSEARCH_PATH_CONF"] = str(config)
        # These come after jvm.options (which says -Xms1g -Xmx1g), so they win; options the
        # user put in the environment come last so they can still override ours.
        user_options = os.environ.get("OPENSEARCH_JAVA_OPTS", "")
        env["OPENSEARCH_JAVA_OPTS"] = f"-Xms{self.heap} -Xmx{self.heap} {user_options}".strip()

        self.log_path = work / "node.log"
        _progress(
            self.show_progress,
            f"starting OpenSearch {self.version} on port {self.port} (log: {self.log_path})",
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.home / "bin" / "opensearch")],
                cwd=str(self.home),  # jvm.options has paths relative to the home (the agent jar)
                env=env,
                stdin=subprocess.DEVNULL,  # no terminal: the script would prompt for a keystore password
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
                user=self._account[0] if self._account else None,
                group=self._account[1] if self._account else None,
                extra_groups=[] if self._account else None,
            )

    def _write_settings(self, config: Path, logs: Path, data: Path, transport_port: int) -> None:
        settings = {
            "cluster.name": _CLUSTER_NAME,
            "node.name": _NODE_NAME,
            "discovery.type": "single-node",
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": transport_port,
            "path.data": str(data),
            "path.logs": str(logs),
            # A nearly full developer disk would otherwise make new indexes unassignable.
            "cluster.routing.allocation.disk.threshold_enabled": False,
        }
        # JSON scalars are valid YAML and quote paths safely.
        text = "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
        (config / "opensearch.yml").write_text(text)

    @staticmethod
    def _redirect_jvm_files(config: Path, logs: Path) -> None:
        # jvm.options writes gc logs, crash files and heap dumps relative to the shared
        # distribution home; point them at this node's own logs dir instead. The start script
        # splits options on whitespace, so a path with spaces must keep the defaults.
        if re.search(r"\s", str(logs)):
            return
        options = config / "jvm.options"
        text = options.read_text()
        text = text.replace("file=logs/", f"file={logs}/").replace("ErrorFile=logs/", f"ErrorFile={logs}/")
        text = text.replace("HeapDumpPath=data", f"HeapDumpPath={logs}")
        options.write_text(text)

    def _wait_healthy(self, timeout: float, retry_on_bind_failure: bool) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                log_text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
                if retry_on_bind_failure and any(marker in log_text for marker in _BIND_FAILURE_MARKERS):
                    raise _BindFailure()
                raise self._failure(f"OpenSearch exited with code {code} before it was healthy")
            if _health(self.url) in _HEALTHY:
                return
            if time.monotonic() > deadline:
                raise self._failure(f"OpenSearch was not healthy after {timeout:.0f}s")
            time.sleep(0.5)

    def _failure(self, what: str) -> NodeError:
        """A NodeError with the gist of the node log and where to read all of it."""
        summary = _summarise_log(self.log_path)
        log = self.log_path
        if self._temp_dir is not None:
            # The temp dir is removed with the failed node; keep its log where it can be read.
            kept = cache_dir() / "last-node-failure.log"
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_path, kept)
                log = kept
        return NodeError(f"{what}: {summary} (log: {log})")

    def _kill_process(self) -> None:
        """SIGTERM the node, wait for it, SIGKILL it if it does not go."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self.detach:
            _signal_group(process.pid, signal.SIGTERM)
        else:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if self.detach:
                _signal_group(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait(timeout=30)

    def _discard_failed_start(self) -> None:
        self._kill_process()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def stop(self) -> None:
        """Stop the node (SIGTERM, then SIGKILL after 30s) and remove its temp dir.

        Directories the caller passed in (``data_dir``, ``work_dir``) are kept.
        """
        self._kill_process()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> "LocalNode":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------
# Background node shared across CLI invocations


def _node_dir() -> Path:
    path = cache_dir() / "node"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_state() -> dict | None:
    try:
        state = json.loads((_node_dir() / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_state(state: dict) -> None:
    # Write then rename, so a reader never sees half a file.
    path = _node_dir() / "state.json"
    temp = path.with_suffix(f".tmp{os.getpid()}")
    temp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(temp, path)


def _remove_state() -> None:
    (_node_dir() / "state.json").unlink(missing_ok=True)


def _is_node_process(pid) -> bool:
    """True when pid is a live OpenSearch process (not a zombie, not a recycled pid)."""
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
        # Empty for a zombie; names bin/opensearch while starting, the OpenSearch class after exec.
        return b"opensearch" in cmdline.read_bytes().lower()
    except OSError:
        return False


@contextlib.contextmanager
def _state_lock():
    """Serialise background start/stop between concurrent CLI invocations."""
    import fcntl  # Unix only, like the rest of the background machinery

    with open(_node_dir() / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def running_url() -> str | None:
    """URL of the background node if it is alive and answering, else None.

    State left by a node that is gone is removed. A node that is alive but not answering
    yet (still starting) keeps its state.
    """
    state = _read_state()
    if state is None:
        return None
    if not _is_node_process(state.get("pid")):
        _remove_state()
        return None
    url = state.get("url")
    if isinstance(url, str) and _health(url) in _HEALTHY:
        return url
    return None


def start_background(
    version: str = DEFAULT_VERSION, port: int | None = None, show_progress: bool = True
) -> str:
    """Return the URL of the background node, starting it (detached) if none is running.

    A running node is reused whatever its version. Data lives in ``cache_dir()/node/data``
    and survives restarts; config and logs in ``cache_dir()/node/run`` (for root, see the
    module docstring). The state file is ``cache_dir()/node/state.json``.
    """
    with _state_lock():
        url = running_url()
        if url is not None:
            return url
        state = _read_state()
        if state is not None:
            raise NodeError(
                f"a background OpenSearch node (pid {state.get('pid')}) is running but not answering "
                f"at {state.get('url')}; stop it with 'scripts/opensearch-node stop' and start again"
            )
        # Same as _node_dir() except when we are root and the node user cannot enter the cache.
        node_dir = _runtime_root(_node_account()) / "node"
        node = LocalNode(
            version=version,
            port=port,
            data_dir=node_dir / "data",
            show_progress=show_progress,
            work_dir=node_dir / "run",
            detach=True,
        )
        node.start()
        _write_state({
            "pid": node.pid,
            "url": node.url,
            "version": version,
            "home": str(node.home),
            "log": str(node.log_path),
        })
        return node.url


def stop_background() -> bool:
    """Stop the background node; return True if one was running. Its data is kept."""
    with _state_lock():
        state = _read_state()
        if state is None:
            return False
        pid = state.get("pid")
        was_running = _is_node_process(pid)
        if was_running:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _is_node_process(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _is_node_process(pid):
                _signal_group(pid, signal.SIGKILL)
                while _is_node_process(pid):
                    time.sleep(0.2)
        _remove_state()
        return was_running


# ---------------------------------------------------------------------------------------
# Command line: python -m connector.local_node start|stop|status|fetch


def _cli_start() -> int:
    print(start_background())
    return 0


def _cli_stop() -> int:
    print("stopped" if stop_background() else "no background node was running")
    return 0


def _cli_status() -> int:
    url = running_url()
    print(url if url is not None else "not running")
    return 0 if url is not None else 1


def _cli_fetch() -> int:
    print(ensure_distribution())
    return 0


_COMMANDS = {"start": _cli_start, "stop": _cli_stop, "status": _cli_status, "fetch": _cli_fetch}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``start|stop|status|fetch``; print NodeError messages on one line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in _COMMANDS:
        print(f"usage: opensearch-node {{{'|'.join(_COMMANDS)}}}", file=sys.stderr)
        return 2
    try:
        return _COMMANDS[args[0]]()
    except NodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
