#!/usr/bin/env python
"""Markdown tables of a benchmark's results JSON, as benchmarks/README.md shows them.

After a rerun, paste the output under the benchmark's section, so the README's numbers are the
committed JSON's and nothing else.

    python benchmarks/tables.py benchmarks/results/engines-cpu.json
    python benchmarks/tables.py benchmarks/results/*.json
"""

import json
import sys
from pathlib import Path


def markdown(rows, columns) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def num(value, digits=0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def encode(d) -> str:
    cuda = d["device"].startswith("cuda")
    base = d["results"].get("sentence-transformers fp32", {}).get("seconds")
    rows = []
    for name, r in d["results"].items():
        fraction = r.get("fraction_of_measured_peak", r.get("fraction_of_measured_bf16_peak"))
        rate = r.get("tflops")
        rows.append({"variant": name.strip(), "docs/s": num(r["docs_per_s"]), "speed-up": f"{base / r['seconds']:.2f}x"
                     if base and "tokenization" not in name else "", "peak MiB": num(r["peak_mib"]), "max abs diff": f"{r['max_abs_diff']:.2g}"
                     if "max_abs_diff" in r else "", "top-32 overlap": f"{r['top32_overlap']:.3f}"
                     if "top32_overlap" in r else "", "nnz/doc": r.get("nnz/doc", ""),
                     "exact columns": r.get("exact columns", ""),
                     ("TFLOP/s" if cuda else "GFLOP/s"): "" if rate is None else num(rate if cuda else rate * 1e3),
                     "of measured peak": "" if fraction is None else f"{fraction:.0%}"})
    columns = ["variant", "docs/s", "speed-up", "peak MiB", "max abs diff", "top-32 overlap", "nnz/doc", "exact columns",
               "TFLOP/s" if cuda else "GFLOP/s", "of measured peak"]
    head = (f"{d['machine']}, {d['date']}, torch {d['torch']}; model {d['model']}, {d['docs']} documents, "
            f"{d['mean_tokens']:.0f} tokens on average, max length {d['max_length']}")
    return head + "\n\n" + markdown(rows, [c for c in columns if any(r.get(c) for r in rows)])


def ingest(d) -> str:
    rows = [{"variant": name, "docs/s": num(r["docs_per_s"], 1), "seconds (median)": num(r["seconds"], 2),
             "speed-up": f"{r['speed_up_vs_plain']:.2f}x", "features/doc": num(r["stored_features_per_doc"]),
             "of which encode s": num(r.get("encode_seconds"), 2) or "(overlapped)"}
            for name, r in d["results"].items()]
    serial = [{"bulk request bytes from (document, vector)": name, "us/doc": num(r["us_per_doc"]),
               "docs/s on one core": num(r["docs_per_s_one_core"])} for name, r in d["client_serialization"].items()]
    head = (f"{d['machine']}, {d['date']}; `{d['command']}`; {d['docs']} documents, {d['node']}, "
            f"median of {d['repeat']} runs each")
    return "\n\n".join([head, markdown(rows, list(rows[0])), markdown(serial, list(serial[0]))])


def query(d) -> str:
    base = d["warm"]["connector QueryEncoder.to_dsl"]["median_us"]
    warm = [{"variant": name, "median us": num(r["median_us"], 1), "p99 us": num(r["p99_us"], 1),
             "vs to_dsl": f"{r['median_us'] / base:.1f}x"} for name, r in d["warm"].items()]
    cold = [{"new process": name, "median s": num(r["median_s"], 3), "min s": num(r["min_s"], 3),
             "max s": num(r["max_s"], 3)} for name, r in d["cold"].items()]
    stages = [{"stage of `search` in a fresh process": name, "median s": num(s, 3)}
              for name, s in d["search_stages"]["median_s"].items()]
    head = (f"{d['machine']}, {d['date']}; `{d['command']}`; {d['queries']} queries "
            f"({d['mean_weighted_tokens']:.1f} weighted tokens on average), {d['reps']} passes; weights differing "
            f"from encode_query: {d['queries_whose_weights_differ_from_encode_query']}; torch-free search: "
            f"{d['torch_free_query_side']}")
    return "\n\n".join([head, markdown(warm, list(warm[0])), markdown(cold, list(cold[0])),
                        markdown(stages, list(stages[0]))])


def search(d) -> str:
    latency = d["latency"]
    rows = []
    for name, r in latency.items():
        source = name.split(", ", 1)[1]
        bm25 = next(v for k, v in latency.items() if k.startswith("BM25") and k.endswith(source))
        rows.append({"query": name, "client p50 ms": num(r["client_p50_ms"], 2), "client p99 ms": num(r["client_p99_ms"], 2),
                     "took p50 ms": num(r["took_p50_ms"]), "queries/s": num(r["queries_per_s"]),
                     "p50 vs BM25": f"{r['client_p50_ms'] / bm25['client_p50_ms']:.2f}x"})
    sizes = [{"index": name, "docs": s["docs"], "store MiB": num(s["store_bytes"] / 2**20, 2),
              "stored fields MiB": num(s["stored_fields_bytes"] / 2**20, 2),
              "terms+postings MiB": num(s["terms_postings_bytes"] / 2**20, 2)} for name, s in d["sizes"].items()]
    head = (f"{d['machine']}, {d['date']}; `{d['command']}`; {d['docs']} documents, {d['queries']} queries x "
            f"{d['passes']} passes, top {d['k']}; {d['node']}")
    return "\n\n".join([head, markdown(rows, list(rows[0])), markdown(sizes, list(sizes[0]))])


def train(d) -> str:
    columns = ["system", "ndcg@10", "ndcg@10_graded", "mrr@10", "map@100", "recall@10", "p50 ms"]
    a = d["args"]
    head = (f"{d['machine']}, {d['date']}; {d['pairs']} title -> text pairs, batch {a['batch_size']}, lr {a['lr']}, "
            f"{d['steps']} steps in {d['train_seconds']:.0f} s")
    return head + "\n\n" + markdown(d["rows"], columns)


def engines(d) -> str:
    parts = [f"{d['machine']}, {d['date']}; `{d['command']}`; " + ", ".join(
        f"{name} {e['version']} ({e['node']})" for name, e in d["engines"].items())
        + f"; load average {d['load_average_1min']['before']:.1f} -> {d['load_average_1min']['after']:.1f}"]
    metrics = ["ndcg@10", "mrr@10", "recall@10", "map@100"]
    for name, c in d["collections"].items():
        encode = c["encode"]
        parts.append(f"**{name}**: {c['documents']:,} documents, {c['queries']} queries"
                     + (f"; encoded once at {encode['docs_per_s']:,.1f} docs/s ({encode['seconds']:.0f} s)" if encode else "")
                     + f"; SPLADE nDCG@10 Elasticsearch - OpenSearch: {c['splade_ndcg10_es_minus_os']:+.4f}")
        parts.append(markdown([{"engine": e, "ingest docs/s": num(i.get("docs_per_s"), 1) or "(reused)",
                                "seconds": num(i.get("seconds"), 1), "documents": i["count_after"],
                                "index MiB (1 segment)": num(i["store_bytes"] / 2**20, 2)}
                               for e, i in c["ingest"].items()],
                              ["engine", "ingest docs/s", "seconds", "documents", "index MiB (1 segment)"]))
        rows = []
        for variant, t in c["latency"].items():
            q = c["quality"].get(variant, {})
            rows.append({"variant": variant, **{m: f"{q[m]:.4f}" for m in metrics if m in q},
                         "p50 ms": num(t["client_p50_ms"], 2), "p99 ms": num(t["client_p99_ms"], 2),
                         "took p50 ms": num(t["took_p50_ms"])})
        parts.append(markdown(rows, ["variant", *metrics, "p50 ms", "p99 ms", "took p50 ms"]))
    return "\n\n".join(parts)


def kind(d: dict) -> str:
    if "benchmark" in d:
        return d["benchmark"]
    return "train" if "rows" in d else "encode"


def main():
    for path in sys.argv[1:]:
        d = json.loads(Path(path).read_text())
        print(f"<!-- {path} -->")
        print(globals()[kind(d)](d))
        print()


if __name__ == "__main__":
    main()
