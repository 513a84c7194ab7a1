"""Running as root: both engines refuse to, so the node runs as an unprivileged user.

That user is `nobody`, or `$SPLADE_OS_NODE_USER`. It cannot enter `/root`, so when the cache
lies there the files the node itself reads and writes (a hard-linked copy of the distribution,
the background node's data) live under `/var/tmp/splade-os-root` instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Tuple

from splade_os.common.cache import cache_dir
from splade_os.common.errors import NodeError
from splade_os.common.files import staged_dir

ROOT_RUNTIME_DIR = Path("/var/tmp/splade-os-root")

Account = Optional[Tuple[int, int]]  # (uid, gid) of the node user; None means "as ourselves"


def node_account(label: str = "the search engine") -> Account:
    """(uid, gid) to run the node as when we are root; None otherwise.

    Raises:
        NodeError: $SPLADE_OS_NODE_USER (default nobody) does not exist or is root.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd  # Unix only, and only needed here

    name = os.environ.get("SPLADE_OS_NODE_USER", "nobody")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NodeError(f"{label} refuses to run as root and the user {name!r} to run it as does not exist: "
                        "set SPLADE_OS_NODE_USER to an unprivileged user") from None
    if entry.pw_uid == 0:
        raise NodeError(f"SPLADE_OS_NODE_USER={name} is root; {label} needs an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def reachable_as(account: Account, path: Path) -> bool:
    """Whether the node user can read (and, for a dir, enter) path.

    Asked of the system itself by running `test` as that user, so directory modes on every
    parent, groups and ACLs are all taken into account.
    """
    if account is None:
        return True
    uid, gid = account
    check = ["test", "-r", str(path), "-a", "-x", str(path)] if path.is_dir() else ["test", "-r", str(path)]
    try:
        result = subprocess.run(check, user=uid, group=gid, extra_groups=[], stdin=subprocess.DEVNULL,
                                capture_output=True)
    except OSError:
        return False
    return result.returncode == 0


def shared_runtime_root() -> Path:
    """The root-owned folder every node user can reach, for files the cache cannot lend it."""
    root = ROOT_RUNTIME_DIR
    root.mkdir(parents=True, exist_ok=True)
    # A world-writable parent (/var/tmp) means someone else could have made this path first.
    info = os.lstat(root)
    if not os.path.isdir(root) or os.path.islink(root) or info.st_uid != 0:
        raise NodeError(f"{root} is not a root-owned directory; remove it or set SPLADE_OS_CACHE")
    root.chmod(0o755)
    return root


def node_root(account: Account) -> Path:
    """Where this cache's node folders live: `cache_dir()/node`, unless the node user cannot reach it.

    Then a folder of this cache's own under the runtime root (named after the cache's path), so
    that two caches never share a node's data.
    """
    base = cache_dir()
    if reachable_as(account, base):
        return base / "node"
    key = hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:12]
    return shared_runtime_root() / "node" / key


def _link_or_copy(source: str, target: str) -> None:
    # Hard links make the copy free on the same file system; copy across file systems.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def home_for(account: Account, home: Path, script: Path) -> Path:
    """A copy of the distribution home that the node user can read (`home` itself if it can).

    Args:
        account: the node user (see `node_account`).
        home: the distribution home in the cache.
        script: the start script inside `home`, the file that must be readable.
    """
    if reachable_as(account, script):
        return home
    # Not the cache: a cache the node user can enter may still hold an unreachable `dist`
    # (a symlink into a private cache), and the copy must not land on the original.
    dist = shared_runtime_root() / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    dist.chmod(0o755)
    mirror = dist / home.name
    mirrored_script = mirror / script.relative_to(home)
    if mirrored_script.is_file() and reachable_as(account, mirrored_script):
        return mirror
    with staged_dir(mirror, replace=mirror.exists()) as staging:
        # copytree also copies home's mode onto the (private) staging folder.
        shutil.copytree(home, staging, symlinks=True, copy_function=_link_or_copy, dirs_exist_ok=True)
    if not mirrored_script.is_file():
        raise NodeError(f"cannot place a copy of the distribution at {mirror}")
    return mirror


def give_to(account: Account, path: Path) -> None:
    """Make path and everything below it owned by the node user, so the node can write there."""
    if account is None:
        return
    uid, gid = account
    for directory, subdirs, files in os.walk(path):
        for name in [directory, *(os.path.join(directory, entry) for entry in subdirs + files)]:
            info = os.lstat(name)
            if (info.st_uid, info.st_gid) != (uid, gid):
                os.lchown(name, uid, gid)
