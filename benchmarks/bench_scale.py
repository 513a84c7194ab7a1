#!/usr/bin/env python
"""The cost curve: index size, bulk speed and search latency of one node from 10k to 1M documents.

Documents. The real passages of Vaswani (11,429) and Cranfield (1,400) from the shared BEIR data,
encoded once with the default model (`DocumentEncoder`, CPU, cached in the bench cache). A
synthetic document is two real passages drawn uniformly at random (distinct): title of the first,
text = first text + second title + second text, and feature map = the elementwise max of the two
real maps, which is what SPLADE's max pooling gives for the concatenated text up to the encoder's
context effects (measured at `encode` time: `concatenation_check` in the results compares the
max-merged map with the real encoding of 200 concatenations). Real term statistics, real weight
distributions, about 1.6x a single passage's features; no two documents of a 1M set are the same
pair with any real chance (82M possible pairs). Size N is the first N documents of one seeded
sequence, so every size holds the smaller ones. Bulk bodies are written straight from the maps
(`BulkLines`, `chunk_actions`, `send_chunk`, 2 requests in flight): the encoder is not measured.

At each size, on one fresh local node (`--heap`, default 2g):
- bulk: the SPLADE index as splade-os creates it (ingest pipeline, `title`/`text` text fields,
  the `splade` rank_features field) and, for comparison, a text-only index (the BM25 index a
  user would have otherwise); docs/s is wall time from the first request to the last answer;
- size: `_stats` store bytes and Lucene file kinds (`include_segment_file_sizes`) after a refresh
  and once merges are done (no force-merge: the state an index is in after a bulk load); the
  SPLADE field's cost = SPLADE index - text-only index;
- search: every Vaswani and Cranfield query (318), `_source: false`, size 10, one client
  sending back to back; SPLADE (the full query), BM25 (`multi_match` over title and text, on the
  SPLADE index) and two-phase SPLADE interleaved query by query; client-side and `took` p50/p99;
- two-phase grid (sizes from `--grid-from`): first-pass tokens x rescore window, one pass each,
  with the top-10 agreement (|two-phase top-10 & full top-10| / |full top-10|, mean over queries).

    nice -n 10 python benchmarks/bench_scale.py encode
    nice -n 10 python benchmarks/bench_scale.py run --sizes 10000 100000 1000000 \\
        --out benchmarks/results/scale-cpu.json
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SPLADE_OS_BENCH_DATA", ROOT.parent / "shared" / "data"))
COLLECTIONS = ("vaswani", "cranfield")
GRID_TOKENS = (3, 5, 8, 12)
GRID_WINDOWS = (50, 100, 200, 500)
K = 10


class Vector(NamedTuple):
    ids: np.ndarray
    values: np.ndarray


def cache_folder() -> Path:
    from splade_os.common.cache import cache_dir

    folder = cache_dir() / "bench-scale"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def real_passages(data: Path) -> List[dict]:
    """Title and text of every non-empty passage of the collections, in file order."""
    out = []
    for name in COLLECTIONS:
        for line in open(data / name / "corpus.jsonl", encoding="utf-8"):
            record = json.loads(line)
            title, text = (record.get("title") or "").strip(), (record.get("text") or "").strip()
            if title or text:
                out.append({"title": title, "text": text})
    return out


def queries(data: Path) -> List[str]:
    return [json.loads(line)["text"] for name in COLLECTIONS
            for line in open(data / name / "queries.jsonl", encoding="utf-8")]


def content(passage: dict) -> str:
    return f"{passage['title']} {passage['text']}".strip()


class RealMaps:
    """The encoded real passages: CSR arrays of feature ids and values, and their texts."""

    def __init__(self, folder: Path):
        arrays = np.load(folder / "maps.npz")
        self.offsets, self.ids, self.values = arrays["offsets"], arrays["ids"], arrays["values"]
        self.passages = json.loads((folder / "passages.json").read_text())
        self.check = json.loads((folder / "check.json").read_text())

    def __len__(self):
        return len(self.passages)

    def vector(self, i: int) -> Vector:
        a, b = self.offsets[i], self.offsets[i + 1]
        return Vector(self.ids[a:b], self.values[a:b])


def merge(a: Vector, b: Vector, scratch: np.ndarray) -> Vector:
    """Elementwise max of two sparse maps (ids sorted ascending)."""
    scratch[a.ids] = a.values
    scratch[b.ids] = np.maximum(scratch[b.ids], b.values)
    ids = np.union1d(a.ids, b.ids)
    values = scratch[ids].copy()
    scratch[ids] = 0.0
    return Vector(ids, values)


def encode(args) -> None:
    """Encode the real passages once with the default model; check the max-merge against real concatenations."""
    from splade_os.documents.encoder import DocumentEncoder
    from splade_os.models.resolve import resolve_model

    folder = cache_folder()
    passages = real_passages(args.data)
    model = resolve_model("default", show_progress=False)
    encoder = DocumentEncoder(model, device="cpu")
    started = time.perf_counter()
    vectors = encoder.encode([content(p) for p in passages])
    seconds = time.perf_counter() - started
    offsets = np.zeros(len(vectors) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(v.ids) for v in vectors])
    np.savez(folder / "maps.npz", offsets=offsets, ids=np.concatenate([v.ids for v in vectors]).astype(np.int32),
             values=np.concatenate([v.values for v in vectors]).astype(np.float32))
    (folder / "passages.json").write_text(json.dumps(passages))
    # How close is max(map a, map b) to the real encoding of the concatenated text?
    rng = np.random.default_rng(1)
    pairs = [tuple(rng.choice(len(passages), 2, replace=False)) for _ in range(200)]
    real = encoder.encode([synthetic_text(passages[a], passages[b])["text_for_encoder"] for a, b in pairs])
    scratch = np.zeros(encoder.vocab_size, dtype=np.float32)
    jaccard, cosine, top32 = [], [], []
    for (a, b), truth in zip(pairs, real):
        merged = merge(Vector(vectors[a].ids, vectors[a].values), Vector(vectors[b].ids, vectors[b].values), scratch)
        x, y = np.zeros(encoder.vocab_size), np.zeros(encoder.vocab_size)
        x[merged.ids], y[truth.ids] = merged.values, truth.values
        jaccard.append(len(np.intersect1d(merged.ids, truth.ids)) / len(np.union1d(merged.ids, truth.ids)))
        cosine.append(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)))
        top32.append(len(set(np.argsort(-x)[:32]) & set(np.argsort(-y)[:32])) / 32)
    check = {"pairs": len(pairs), "mean_feature_jaccard": float(np.mean(jaccard)), "mean_cosine": float(np.mean(cosine)),
             "mean_top32_overlap": float(np.mean(top32)),
             "mean_features_merged": float(np.mean([len(np.union1d(vectors[a].ids, vectors[b].ids)) for a, b in pairs])),
             "mean_features_real_concatenation": float(np.mean([len(v.ids) for v in real])),
             "mean_features_single_passage": float(np.mean(np.diff(offsets))),
             "encode_seconds": seconds, "passages": len(passages)}
    (folder / "check.json").write_text(json.dumps(check, indent=1))
    print(json.dumps(check, indent=1))


def synthetic_text(first: dict, second: dict) -> dict:
    text = " ".join(part for part in (first["text"], second["title"], second["text"]) if part)
    return {"title": first["title"], "text": text, "text_for_encoder": f"{first['title']} {text}".strip()}


def documents(real: RealMaps, n: int, seed: int = 0, vectors: bool = True):
    """(id, title, text, vector or None) of the first n synthetic documents of the seeded sequence."""
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, len(real), size=(n, 2))
    same = pairs[:, 0] == pairs[:, 1]
    pairs[same, 1] = (pairs[same, 1] + 1) % len(real)
    scratch = np.zeros(int(real.ids.max()) + 1, dtype=np.float32)
    for j, (a, b) in enumerate(pairs.tolist()):
        fields = synthetic_text(real.passages[a], real.passages[b])
        yield f"s{j}", fields["title"], fields["text"], merge(real.vector(a), real.vector(b), scratch) if vectors else None


# -- bulk -----------------------------------------------------------------------------------------

def bulk(cluster, index_name: str, actions, workers: int = 2) -> dict:
    """Send the action stream in chunks of 500 documents, `workers` requests in flight; time it."""
    from splade_os.bulk import RetryPolicy, chunk_actions, send_chunk

    policy, max_bytes = RetryPolicy(), min(10 << 20, cluster.max_content_length // 2)
    rejected, sent, nbytes = [0], 0, 0
    lock = threading.Lock()

    def send(chunk):
        reasons = send_chunk(cluster, chunk, policy)
        bad = [r for r in reasons if r is not None]
        with lock:
            rejected[0] += len(bad)
            if bad and rejected[0] == len(bad):
                print(f"  first rejection: {bad[0]}", file=sys.stderr)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures, batch = [], []
        for action in actions:
            batch.append(action)
            if len(batch) == 5000:
                for chunk in chunk_actions(batch, 500, max_bytes):
                    futures.append(pool.submit(send, [batch[i] for i in chunk]))
                sent, nbytes, batch = sent + len(batch), nbytes + sum(map(len, batch)), []
                while sum(not f.done() for f in futures) > 2 * workers:
                    time.sleep(0.005)
                for f in [f for f in futures if f.done()]:
                    f.result()  # raises what the sender raised
                futures = [f for f in futures if not f.done()]
        for chunk in chunk_actions(batch, 500, max_bytes):
            futures.append(pool.submit(send, [batch[i] for i in chunk]))
        sent, nbytes = sent + len(batch), nbytes + sum(map(len, batch))
        for f in futures:
            f.result()
    seconds = time.perf_counter() - started
    return {"docs": sent, "rejected": rejected[0], "seconds": seconds, "docs_per_s": sent / seconds,
            "request_mb": nbytes / 2**20, "mb_per_s": nbytes / 2**20 / seconds}


def settle(cluster, index: str, timeout: float = 1800) -> float:
    """Refresh, then wait until no merge runs; returns the seconds waited."""
    started = time.perf_counter()
    cluster.request("POST", f"/{index}/_refresh")
    while time.perf_counter() - started < timeout:
        stats = cluster.request("GET", f"/{index}/_stats/merge")
        if stats["_all"]["primaries"]["merges"]["current"] == 0:
            break
        time.sleep(2)
    cluster.request("POST", f"/{index}/_refresh")
    return time.perf_counter() - started


def sizes(cluster, index: str) -> dict:
    stats = cluster.request("GET", f"/{index}/_stats/store,segments,docs",
                            params={"include_segment_file_sizes": "true"})["_all"]["primaries"]
    files = {kind: value["size_in_bytes"] for kind, value in stats["segments"].get("file_sizes", {}).items()}
    stored = sum(v for k, v in files.items() if k in ("fdt", "fdx", "fdm"))
    postings = sum(v for k, v in files.items() if k in ("doc", "pos", "pay", "tim", "tip", "tmd"))
    return {"store_bytes": stats["store"]["size_in_bytes"], "docs": stats["docs"]["count"],
            "segments": stats["segments"]["count"], "stored_fields_bytes": stored, "terms_postings_bytes": postings,
            "file_bytes": files}


# -- search ---------------------------------------------------------------------------------------

def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summary(client_ms: List[float], took_ms: List[float]) -> dict:
    return {"client_p50_ms": percentile(client_ms, 50), "client_p99_ms": percentile(client_ms, 99),
            "client_mean_ms": statistics.fmean(client_ms), "took_p50_ms": percentile(took_ms, 50),
            "took_p99_ms": percentile(took_ms, 99), "queries_per_s": 1000 / statistics.fmean(client_ms),
            "queries": len(client_ms)}


def timed(cluster, index: str, body: dict):
    started = time.perf_counter()
    answer = cluster.request("POST", f"/{index}/_search", body)
    ms = (time.perf_counter() - started) * 1000
    return ms, float(answer.get("took", 0)), [h["_id"] for h in answer["hits"]["hits"]]


def agreement(ids: List[str], full: List[str]) -> float:
    return len(set(ids) & set(full)) / len(full) if full else 1.0


def search_bench(cluster, index, texts: List[str], bodies: Dict[str, List[dict]], passes: int) -> dict:
    """Each variant's bodies sent for every query, interleaved query by query (rotating the order)."""
    names = list(bodies)
    for i in range(len(texts)):  # warm-up
        for name in names:
            timed(cluster, index, bodies[name][i])
    client = {n: [] for n in names}
    took = {n: [] for n in names}
    hits = {n: [None] * len(texts) for n in names}
    for p in range(passes):
        for i in range(len(texts)):
            order = names[(i + p) % len(names):] + names[:(i + p) % len(names)]
            for name in order:
                ms, took_ms, ids = timed(cluster, index, bodies[name][i])
                client[name].append(ms)
                took[name].append(took_ms)
                hits[name][i] = ids
    return {n: summary(client[n], took[n]) for n in names}, hits


def two_phase_grid(cluster, index, splade_index, encoder, texts, full_hits, tokens_grid=GRID_TOKENS,
                   windows_grid=GRID_WINDOWS) -> List[dict]:
    """Every (tokens, window) of the grid for every query, interleaved query by query (rotating the order)."""
    from splade_os.query import TwoPhase

    configs = [TwoPhase(tokens, window) for tokens in tokens_grid for window in windows_grid]
    client = {c: [] for c in configs}
    took = {c: [] for c in configs}
    agree = {c: [] for c in configs}
    for i, text in enumerate(texts):
        shift = i % len(configs)
        for config in configs[shift:] + configs[:shift]:
            ms, took_ms, ids = timed(cluster, index, splade_index.body(text, K, encoder, source=False,
                                                                       two_phase=config))
            client[config].append(ms)
            took[config].append(took_ms)
            agree[config].append(agreement(ids, full_hits[i]))
    rows = []
    for c in configs:
        rows.append({"tokens": c.tokens, "window": c.window, "top10_agreement": statistics.fmean(agree[c]),
                     "min_agreement": min(agree[c]), **summary(client[c], took[c])})
        print(f"    two-phase tokens={c.tokens:<3} window={c.window:<5} agreement {rows[-1]['top10_agreement']:.3f} "
              f"p50 {rows[-1]['client_p50_ms']:.1f} ms p99 {rows[-1]['client_p99_ms']:.1f} ms", file=sys.stderr)
    return rows


# -- one size -------------------------------------------------------------------------------------

def measure_size(cluster, model, real: RealMaps, texts: List[str], n: int, args) -> dict:
    from splade_os.bulk import BulkLines, index_action
    from splade_os.cluster.index import IndexSettings, SpladeIndex

    name, plain = f"scale-{n}", f"scale-text-{n}"
    if args.search_only:  # an index kept by an earlier run (--keep): measure its searches again
        return search_size(cluster, SpladeIndex(cluster, name), texts, n, {"docs": n, "search_only": True}, args)
    for existing in (name, plain):
        if cluster.exists(f"/{existing}"):
            cluster.request("DELETE", f"/{existing}")
    index = SpladeIndex(cluster, name)
    if not args.pipeline:
        # As on a cluster without ingest processors: the client stamps what the pipeline would.
        cluster.__dict__["has_ingest_checks"] = False
    index.create(model, IndexSettings())
    cluster.__dict__.pop("has_ingest_checks", None)
    identity = model.identity
    lines = BulkLines(name, index.field, model.query_encoder.keys)

    def fields(title, text):
        if index.pipeline:
            return {"title": title, "text": text, "splade_fingerprint": identity.fingerprint}
        return {"title": title, "text": text, "splade_model": {"name": identity.name, "version": identity.version}}

    result = {"docs": n, "pipeline": bool(index.pipeline)}
    print(f"[{n}] bulk SPLADE index", file=sys.stderr)
    result["bulk_splade"] = bulk(cluster, name, (lines.document(i, fields(t, x), v)
                                                 for i, t, x, v in documents(real, n)))
    result["settle_splade_s"] = settle(cluster, name)
    cluster.request("PUT", f"/{plain}", {"settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
                                         "mappings": {"dynamic": False, "properties": {
                                             "title": {"type": "text"}, "text": {"type": "text"}}}})
    print(f"[{n}] bulk text-only index", file=sys.stderr)
    result["bulk_text_only"] = bulk(cluster, plain, (index_action(plain, i, {"title": t, "text": x})
                                                     for i, t, x, _ in documents(real, n, vectors=False)))
    result["settle_text_only_s"] = settle(cluster, plain)
    result["size_splade_index"], result["size_text_only_index"] = sizes(cluster, name), sizes(cluster, plain)
    cluster.request("DELETE", f"/{plain}")
    full, text_only = result["size_splade_index"], result["size_text_only_index"]
    result["splade_field_bytes"] = full["store_bytes"] - text_only["store_bytes"]
    result["splade_field_bytes_per_doc"] = result["splade_field_bytes"] / n
    print(f"[{n}] sizes: SPLADE index {full['store_bytes'] / 2**20:.0f} MiB, text-only "
          f"{text_only['store_bytes'] / 2**20:.0f} MiB", file=sys.stderr)

    if args.bulk_only:
        cluster.request("DELETE", f"/{name}")
        return result
    return search_size(cluster, index, texts, n, result, args)


def search_size(cluster, index, texts: List[str], n: int, result: dict, args) -> dict:
    """The two-phase grid and the interleaved SPLADE / BM25 / two-phase timing on one index."""
    from splade_os.query import TwoPhase, bm25_body

    name = index.name
    encoder = index.query_encoder()
    full_bodies = [index.body(t, K, encoder, source=False) for t in texts]
    result["mean_query_tokens"] = statistics.fmean(len(encoder.weights(t)) for t in texts)
    # Full-query top 10, the reference for the grid.
    full_hits = [timed(cluster, name, body)[2] for body in full_bodies]
    if n >= args.grid_from:
        print(f"[{n}] two-phase grid", file=sys.stderr)
        result["two_phase_grid"] = two_phase_grid(cluster, name, index, encoder, texts, full_hits, args.grid_tokens,
                                                  args.grid_windows)
    chosen = TwoPhase(args.tokens, args.window)
    bodies = {"splade": full_bodies, "bm25": [bm25_body(t, K, source=False) for t in texts],
              "splade_two_phase": [index.body(t, K, encoder, source=False, two_phase=chosen) for t in texts]}
    others = [TwoPhase(*map(int, spec.split(":"))) for spec in args.also]
    for other in others:  # more two-phase settings, interleaved with the rest
        bodies[f"splade_two_phase_{other.tokens}_{other.window}"] = [
            index.body(t, K, encoder, source=False, two_phase=other) for t in texts]
    print(f"[{n}] search", file=sys.stderr)
    result["search"], hits = search_bench(cluster, name, texts, bodies, args.passes)
    result["two_phase"] = {"tokens": chosen.tokens, "window": chosen.window,
                           "top10_agreement": statistics.fmean(agreement(a, b) for a, b in
                                                               zip(hits["splade_two_phase"], hits["splade"]))}
    for other in others:
        key = f"splade_two_phase_{other.tokens}_{other.window}"
        result["search"][key]["top10_agreement"] = statistics.fmean(
            agreement(a, b) for a, b in zip(hits[key], hits["splade"]))
    s = result["search"]
    print(f"[{n}] p50 ms: SPLADE {s['splade']['client_p50_ms']:.1f}, BM25 {s['bm25']['client_p50_ms']:.1f}, "
          f"two-phase {s['splade_two_phase']['client_p50_ms']:.1f} (agreement "
          f"{result['two_phase']['top10_agreement']:.3f})", file=sys.stderr)
    if not args.keep:
        cluster.request("DELETE", f"/{name}")
    return result


def machine() -> str:
    model = platform.processor() or "cpu"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores"


def run(args) -> None:
    from splade_os.cluster import connect
    from splade_os.local_node import LocalNode
    from splade_os.models.resolve import resolve_model

    folder = cache_folder()
    if not (folder / "check.json").exists():
        raise SystemExit(f"{folder}: no encoded passages yet; run `bench_scale.py encode` first")
    real = RealMaps(folder)
    texts = queries(args.data)
    model = resolve_model("default", show_progress=False)
    record = {"benchmark": "scale", "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
              "machine": machine(), "model": "default", "heap": args.heap, "queries": len(texts), "k": K,
              "passes": args.passes, "real_passages": len(real), "concatenation_check": real.check, "sizes": []}
    started = time.perf_counter()
    node = None if args.url else LocalNode(heap=args.heap, show_progress=False).start()
    try:
        cluster = connect(args.url or node.url)
        record["engine"] = f"{cluster.engine.name} {cluster.version}"
        for n in args.sizes:
            began = time.perf_counter()
            record["sizes"].append(measure_size(cluster, model, real, texts, n, args))
            record["sizes"][-1]["wall_s"] = time.perf_counter() - began
            record["wall_s"] = time.perf_counter() - started
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(record, indent=1))
    finally:
        if node is not None:
            node.stop()
    print(table(record))


def table(record: dict) -> str:
    """The cost-curve table of docs/scale.md."""
    head = ("| docs | SPLADE index | text-only index | SPLADE field / doc | bulk SPLADE docs/s | bulk text docs/s "
            "| SPLADE p50 / p99 ms | BM25 p50 / p99 ms | two-phase p50 / p99 ms | SPLADE / BM25 qps | two-phase qps "
            "| two-phase top-10 agreement |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in record["sizes"]:
        if "size_splade_index" not in r:  # a --search-only run
            continue
        s = r["search"]
        rows.append(
            f"| {r['docs']:,} | {r['size_splade_index']['store_bytes'] / 2**20:,.0f} MiB "
            f"| {r['size_text_only_index']['store_bytes'] / 2**20:,.0f} MiB | {r['splade_field_bytes_per_doc']:,.0f} B "
            f"| {r['bulk_splade']['docs_per_s']:,.0f} | {r['bulk_text_only']['docs_per_s']:,.0f} "
            f"| {s['splade']['client_p50_ms']:.1f} / {s['splade']['client_p99_ms']:.1f} "
            f"| {s['bm25']['client_p50_ms']:.1f} / {s['bm25']['client_p99_ms']:.1f} "
            f"| {s['splade_two_phase']['client_p50_ms']:.1f} / {s['splade_two_phase']['client_p99_ms']:.1f} "
            f"| {s['splade']['queries_per_s']:.0f} / {s['bm25']['queries_per_s']:.0f} "
            f"| {s['splade_two_phase']['queries_per_s']:.0f} | {r['two_phase']['top10_agreement']:.3f} |")
    for r in record["sizes"]:
        if "two_phase_grid" not in r:
            continue
        rows += ["", f"Two-phase grid at {r['docs']:,} documents (client p50 / p99 ms, `took` p50 / p99 ms, "
                 "top-10 agreement with the full query):", "",
                 "| first-pass tokens | window | p50 / p99 ms | took p50 / p99 ms | agreement | worst query |",
                 "|---|---|---|---|---|---|"]
        rows += [f"| {g['tokens']} | {g['window']} | {g['client_p50_ms']:.1f} / {g['client_p99_ms']:.1f} "
                 f"| {g['took_p50_ms']:.0f} / {g['took_p99_ms']:.0f} | {g['top10_agreement']:.3f} "
                 f"| {g['min_agreement']:.1f} |" for g in r["two_phase_grid"]]
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding vaswani/ and cranfield/ (BEIR)")
    sub = parser.add_subparsers(dest="stage", required=True)
    sub.add_parser("encode", help="encode the real passages once (cached)")
    go = sub.add_parser("run", help="index and measure each size")
    go.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    go.add_argument("--url", help="a cluster to use instead of a fresh local node")
    go.add_argument("--heap", default="2g")
    go.add_argument("--passes", type=int, default=3)
    go.add_argument("--tokens", type=int, default=12, help="two-phase first-pass tokens for the timed comparison")
    go.add_argument("--window", type=int, default=200, help="two-phase rescore window for the timed comparison")
    go.add_argument("--also", nargs="*", default=[], metavar="TOKENS:WINDOW",
                    help="more two-phase settings timed in the same interleaved comparison")
    go.add_argument("--grid-from", type=int, default=100_000, help="run the two-phase grid at sizes from this one")
    go.add_argument("--grid-tokens", type=int, nargs="+", default=list(GRID_TOKENS))
    go.add_argument("--grid-windows", type=int, nargs="+", default=list(GRID_WINDOWS))
    go.add_argument("--keep", action="store_true", help="keep the SPLADE indexes (disk!)")
    go.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                    help="create the SPLADE index without its ingest pipeline (client-stamped fields)")
    go.add_argument("--bulk-only", action="store_true", help="measure bulk and sizes only")
    go.add_argument("--search-only", action="store_true",
                    help="measure the searches again on indexes an earlier run kept (--keep)")
    go.add_argument("--out", type=Path)
    go.add_argument("--table", action="store_true", help="print the table of an existing --out file and stop")
    args = parser.parse_args(argv)
    if args.stage == "encode":
        encode(args)
    elif args.table:
        print(table(json.loads(args.out.read_text())))
    else:
        run(args)


if __name__ == "__main__":
    main()
