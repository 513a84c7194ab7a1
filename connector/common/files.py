"""Writing files and folders so that a crash leaves the old version or the new one, never half of one."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Union


def atomic_write(path: Union[str, Path], data: Union[bytes, str]) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsynced and renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def staged_dir(target: Union[str, Path], replace: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it becomes `target` in one rename.

    With `replace` False, a `target` that appeared meanwhile (another process finished first) is
    kept and the staged copy dropped. On an exception the staging folder is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            if not replace:
                return
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
