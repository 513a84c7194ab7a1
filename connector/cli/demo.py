"""The main job on the embedded default: ingest the bundled sample, then search it."""

import json
from typing import Iterator

from splade_os.common.cache import cache_dir
from splade_os.models.builder import SAMPLE_DIR

SAMPLE_QUERIES = 3
SAMPLE_DOCUMENTS = 1398  # Cranfield's 1400 less the two empty ones


def run_demo(cluster, index: str = "splade-os-sample", show_progress: bool = True) -> Iterator[str]:
    """Ingest the bundled Cranfield sample with the default model (once) and yield result lines."""
    from splade_os.ingest.single import IngestOptions, ingest
    from splade_os.models.resolve import resolve_model

    handle = cluster.index(index)
    present = handle.count() if handle.exists() else 0
    if present == SAMPLE_DOCUMENTS:
        yield f"index {index!r} already holds the {present} sample documents"
    else:
        dead = cache_dir() / f"{index}.rejected.jsonl"
        model = resolve_model("default", cluster, show_progress=show_progress)
        stats = ingest(cluster, SAMPLE_DIR / "corpus.jsonl", index, model, options=IngestOptions(dead_letter=dead),
                       show_progress=show_progress)
        yield (f"ingested {stats.indexed} documents into {index!r} in {stats.seconds:.1f} s "
               f"({stats.docs_per_second:.1f} docs/s)")
        if stats.rejected:
            # Cranfield has two documents with no title and no text (471 and 995).
            yield f"{stats.rejected} line(s) rejected, see {dead}"
    with open(SAMPLE_DIR / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for _, line in zip(range(SAMPLE_QUERIES), f)]
    for text in queries:
        yield ""
        yield f"query: {text}"
        for rank, hit in enumerate(handle.search(text, k=5), 1):
            yield f"{rank:>3}  {hit.score:8.3f}  {hit.id:<6} {' '.join(hit.title.split())[:80]}"
