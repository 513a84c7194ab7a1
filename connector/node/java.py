"""Choosing the JDK a node runs on: neither zip bundles one. Both engines' current versions need
Java 21+; OpenSearch 2.x runs on 17 to 23 (it needs the security manager that Java 24 removed)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Optional

from splade_os.common.errors import NodeError
from .engines import node_engine

MIN_JAVA = 21
JVM_DIR = Path("/usr/lib/jvm")


def java_major(java_home: Path) -> Optional[int]:
    """Major version of `java_home/bin/java`, or None when it does not run."""
    java = java_home / "bin" / "java"
    if not java.is_file():
        return None
    try:
        result = subprocess.run([str(java), "-version"], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=60)
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


def find_java_home(engine="opensearch", min_version: int = MIN_JAVA, max_version: Optional[int] = None) -> Path:
    """Return a JDK home whose java is at least `min_version` (and at most `max_version`).

    Looks at the engine's own variable ($OPENSEARCH_JAVA_HOME or $ES_JAVA_HOME), then $JAVA_HOME,
    then takes the newest fitting JDK in /usr/lib/jvm.

    Raises:
        NodeError: none qualifies (the message names what was rejected).
    """
    spec = node_engine(engine)
    rejected = []
    for variable in (spec.java_home_var, "JAVA_HOME"):
        value = os.environ.get(variable)
        if not value:
            continue
        major = java_major(Path(value).expanduser())
        if major is not None and _fits(major, min_version, max_version):
            return Path(value).expanduser()
        found = f"Java {major}" if major is not None else "no working bin/java"
        rejected.append(f"{variable}={value} ({found})")
    best = _newest_installed(min_version, max_version)
    if best is not None:
        return best
    detail = f" (rejected {', '.join(rejected)})" if rejected else ""
    wanted = f"Java {min_version}+" if max_version is None else f"Java {min_version} to {max_version}"
    raise NodeError(f"{spec.label} needs {wanted} and none was found{detail}: "
                    f"install such a JDK and set {spec.java_home_var} to its directory")


def _fits(major: int, min_version: int, max_version: Optional[int]) -> bool:
    return major >= min_version and (max_version is None or major <= max_version)


def _newest_installed(min_version: int, max_version: Optional[int]) -> Optional[Path]:
    best: Optional[tuple] = None
    if JVM_DIR.is_dir():
        for candidate in sorted(JVM_DIR.iterdir()):
            major = java_major(candidate)
            if major is not None and _fits(major, min_version, max_version) and (best is None or major > best[0]):
                best = (major, candidate)
    return best[1] if best is not None else None
