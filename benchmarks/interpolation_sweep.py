#!/usr/bin/env python
"""Where on the line from the start to the trained model do the test queries peak?

For a finished training run (its `final/` model and the `start/` it began from, as
`splade-os train --teacher` leaves them in OUTPUT, or `train_self_supervised.py --work` in
WORK/<collection>/run), every judged test query of a BEIR folder is evaluated exactly, in memory,
for the weights start + s x (checkpoint - start) at each share s: what `--interpolate s` would
have saved. A `final/` that was itself interpolated is first extended back to its checkpoint (its
`splade_os_training.json` records the share). Test queries choose nothing in training: this
measures the option after the fact, on one run.

    python benchmarks/interpolation_sweep.py RUN_DIR BEIR_DIR [--shares 0 0.3 0.5 0.7 1] \\
        [--out benchmarks/results/interpolation-cranfield.json]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import machine, save_results, table  # noqa: E402

import splade_os  # noqa: E402
from splade_os.corpus.beir import load_beir  # noqa: E402
from splade_os.evaluate import evaluate_exact, exact_doc_vectors  # noqa: E402
from splade_os.training.trainer import interpolate  # noqa: E402

METRICS = ("ndcg@10", "mrr@10", "recall@10", "corpus_active_dims")


def saved_share(final: Path) -> float:
    """The share `final` was saved at (1 when it was not interpolated)."""
    record = final / "splade_os_training.json"
    validation = json.loads(record.read_text())["validation"] if record.exists() else {}
    return validation.get("interpolation") or 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="the run folder, with start/ and final/")
    parser.add_argument("beir", type=Path, help="the BEIR folder whose test queries are evaluated")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--out", type=Path)
    settings = parser.parse_args()
    from sentence_transformers import SparseEncoder

    queries, qrels, corpus = load_beir(settings.beir)
    start = SparseEncoder(str(settings.run / "start"), device="cpu").state_dict()
    model = SparseEncoder(str(settings.run / "final"), device="cpu")
    saved = saved_share(settings.run / "final")
    final = {k: v.clone() for k, v in model.state_dict().items()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        for share in settings.shares:
            model.load_state_dict(final)
            interpolate(model, start, share / saved)  # final = start + saved x (checkpoint - start)
            folder = Path(tmp) / f"share-{share}"
            model.save(str(folder))
            candidate = splade_os.resolve_model(str(folder), show_progress=False)
            started = time.perf_counter()
            metrics = evaluate_exact(exact_doc_vectors(corpus, candidate, device="cpu"), queries, qrels,
                                     candidate.query_encoder)
            rows.append({"share": share, **{m: round(metrics[m], 4) for m in METRICS},
                         "seconds": round(time.perf_counter() - started, 1)})
            print(table(rows[-1:], ["share", *METRICS, "seconds"]), flush=True)
    summary = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "run": str(settings.run),
               "beir": str(settings.beir), "saved_share": saved, "rows": rows}
    print(table(rows, ["share", *METRICS]))
    save_results(settings.out, summary)


if __name__ == "__main__":
    main()
