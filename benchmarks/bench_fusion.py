#!/usr/bin/env python
"""Benchmark 11: the hybrid fusion measured on the index (no labels) against BM25, SPLADE and
equal-say fusion, judged with BEIR's rules.

Each BEIR folder given is ingested on a throw-away local node (or `--url`) once per variant of the
SPLADE side, each a way SPLADE can be weaker than BM25 on a collection:

- `default`: the default model as shipped;
- `top8` / `top2`: the same documents, each cut to its 8 / 2 heaviest features (`--prune-top-k`);
- `flat`: the default model with its query table flattened (every token that has a weight gets
  1): a model whose static table does not fit the collection.

Ingest measures and records the fusion (`splade_os.evaluate.fusion`); then `compare_index` gives
BM25, SPLADE and the recorded hybrid, and one more run gives hybrid with equal say (weight 0.5,
the earlier default). Graded nDCG@10 over every judged query, self-hits dropped where query ids
are document ids. The issue's targets, per row: hybrid >= max(BM25, SPLADE) - 0.002, and
>= max + 0.015 where the two are within 0.03.

    python benchmarks/bench_fusion.py --data ../shared/data/cranfield --data ../shared/data/vaswani \\
        --data ~/.cache/splade-os-dev/collections/medline --out benchmarks/results/fusion-cpu.json
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import arguments, cluster, drop, machine, save_results, table, working_dir  # noqa: E402
from splade_os.cluster.index import IndexSettings  # noqa: E402
from splade_os.corpus.beir import load_beir  # noqa: E402
from splade_os.documents.vectors import VectorOptions  # noqa: E402
from splade_os.evaluate.compare import compare_index  # noqa: E402
from splade_os.evaluate.run import evaluate_index  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.models.resolve import resolve_model  # noqa: E402
from splade_os.query.hybrid import Hybrid  # noqa: E402

VARIANTS = ("default", "top8", "top2", "flat")
MEASURE = "ndcg@10_graded"


def flat_model(folder: Path) -> Path:
    """A copy of the default model whose query table gives every weighted token 1."""
    from safetensors.numpy import load_file, save_file

    if folder.exists():
        return folder
    shutil.copytree(resolve_model("default", show_progress=False).root, folder)
    table_file = folder / "query_0_SparseStaticEmbedding" / "model.safetensors"
    weight = load_file(str(table_file))["weight"]
    save_file({"weight": (weight > 0).astype(weight.dtype)}, str(table_file))
    return folder


def run_variant(target, folder: Path, variant: str, work: Path) -> dict:
    queries, qrels, corpus = load_beir(folder)
    model = resolve_model(str(flat_model(work / "flat-model")) if variant == "flat" else "default", show_progress=False)
    vectors = VectorOptions(prune_top_k=int(variant[3:])) if variant.startswith("top") else VectorOptions()
    name = f"bench-fusion-{folder.name}-{variant}".lower()
    drop(target, name)
    with working_dir(work):
        stats = ingest(target, corpus, name, model, show_progress=False,
                       options=IngestOptions(index=IndexSettings(vectors=vectors), checkpoint=work / f"{name}.ck",
                                             dead_letter=work / f"{name}.dead.jsonl"))
    index = target.index(name)
    encoder = model.query_encoder
    comparison = compare_index(index, queries, qrels, encoder, k=100)
    equal = evaluate_index(index, queries, qrels, encoder, k=100, hybrid=Hybrid(weight=0.5))
    scores = {system: r.metrics[MEASURE] for system, r in comparison.results.items()}
    best = max(scores["bm25"], scores["splade"])
    close = abs(scores["bm25"] - scores["splade"]) <= 0.03
    need = best + 0.015 if close else best - 0.002
    calibration = index.meta["fusion"]["calibration"]["mrr"]
    drop(target, name)
    return {"collection": folder.name, "variant": variant, "documents": stats.indexed,
            "queries": comparison.results["bm25"].queries,
            "self-hits": comparison.results["bm25"].settings["self_hits"]["rule"],
            "MRR BM25 (sampled)": round(calibration["bm25"], 3), "MRR SPLADE (sampled)": round(calibration["splade"], 3),
            "weight": index_weight(comparison), "BM25": round(scores["bm25"], 4), "SPLADE": round(scores["splade"], 4),
            "hybrid equal say": round(equal.metrics[MEASURE], 4), "hybrid measured": round(scores["hybrid"], 4),
            "target": round(need, 4), "met": scores["hybrid"] >= need - 5e-5,
            "hybrid - bm25 p": round(comparison.differences[1].p_value, 3),
            "hybrid - splade p": round(comparison.differences[2].p_value, 3)}


def index_weight(comparison) -> float:
    return comparison.results["hybrid"].settings["hybrid"]["weight"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", required=True, help="a BEIR folder (repeat)")
    parser.add_argument("--variant", choices=VARIANTS, action="append", help="the variants (default: all)")
    parser.add_argument("--engine", choices=["opensearch", "elasticsearch"], default="opensearch")
    parser.add_argument("--url", help="a cluster to use instead of a throw-away node")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with cluster(args.url, engine=args.engine) as target, tempfile.TemporaryDirectory(prefix="bench-fusion-") as tmp:
        for folder in args.data:
            for variant in args.variant or VARIANTS:
                rows.append(run_variant(target, folder.expanduser(), variant, Path(tmp)))
                print(table(rows[-1:], list(rows[-1])), flush=True)
        version = f"{target.engine.name} {target.version}"
    columns = ["collection", "variant", "MRR BM25 (sampled)", "MRR SPLADE (sampled)", "weight", "BM25", "SPLADE",
               "hybrid equal say", "hybrid measured", "target", "met"]
    print(f"\n{version}\n" + table(rows, columns))
    given = {**arguments(args), "data": [str(folder) for folder in args.data]}
    save_results(args.out, {"machine": machine(), "engine": version, "arguments": given, "rows": rows})


if __name__ == "__main__":
    main()
