"""The bundled sample, cut and ingested the way several integration tests need it."""

from pathlib import Path

from splade_os.ingest import IngestOptions, ingest


def first_documents(sample_dir: Path, folder: Path, n: int) -> Path:
    """A JSONL file in `folder` holding the first `n` documents of the bundled Cranfield corpus."""
    corpus = folder / f"cran{n}.jsonl"
    lines = open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:n]
    corpus.write_text("".join(lines), encoding="utf-8")
    return corpus


def ingest_first(cluster, model, sample_dir: Path, folder: Path, name: str, n: int, settings=None):
    """Ingest the first `n` Cranfield documents into index `name` (checkpoint and dead letters in
    `folder`); the `SpladeIndex`."""
    corpus = first_documents(sample_dir, folder, n)
    ingest(cluster, corpus, name, model, show_progress=False,
           options=IngestOptions(index=settings, checkpoint=folder / f"{name}.checkpoint.json",
                                 dead_letter=folder / f"{name}.dead.jsonl"))
    return cluster.index(name)
