"""The cache folder: `$SPLADE_OS_CACHE`, else `~/.cache/splade-os`.

It holds what is built or fetched once and reused: search-engine distributions, the local nodes'
data, the default model, models pulled from a registry, query sides, and ingest checkpoints.
"""

import os
from pathlib import Path


def cache_dir() -> Path:
    """The splade-os cache folder, created when missing."""
    configured = os.environ.get("SPLADE_OS_CACHE")
    path = Path(configured).expanduser() if configured else Path.home() / ".cache" / "splade-os"
    path.mkdir(parents=True, exist_ok=True)
    return path
