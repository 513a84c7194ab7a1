"""The ingest checkpoint: how far into the input the cluster has acknowledged everything.

It is rewritten atomically (a temp file renamed over the old one) after every window the
cluster has settled, so a crash at any moment leaves either the old or the new checkpoint.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from splade_os.common.cache import cache_dir
from splade_os.common.errors import InputError
from splade_os.common.files import atomic_write


@dataclass
class Checkpoint:
    """Lines up to `line` are indexed or in the dead-letter file; nothing after it is counted."""

    input: str
    input_size: int
    input_mtime: float
    index: str
    fingerprint: str
    dead_letter: str
    line: int = 0
    indexed: int = 0
    rejected: int = 0
    complete: bool = False
    alias: Optional[str] = None

    def save(self, path: Path) -> None:
        atomic_write(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "Checkpoint":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise InputError(f"{path}: no checkpoint to resume from (run ingest without --resume)") from None
        except (ValueError, TypeError) as e:
            raise InputError(f"{path}: not a splade-os checkpoint ({e})") from None

    def matches(self, corpus: Path) -> bool:
        stat = Path(corpus).stat()
        return stat.st_size == self.input_size and abs(stat.st_mtime - self.input_mtime) < 1e-3


def default_path(corpus: Path, index: str) -> Path:
    """The cache's `checkpoints/<corpus stem>-<index>-<hash of the corpus path>.json`."""
    digest = hashlib.sha256(str(Path(corpus).resolve()).encode()).hexdigest()[:10]
    return cache_dir() / "checkpoints" / f"{Path(corpus).stem}-{index}-{digest}.json"
