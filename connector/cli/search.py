"""Commands that search: `search`, `query` (the body an app sends), `eval`, `calibrate` (the hybrid fusion)."""

import json
import time
from pathlib import Path

import click

from splade_os.cli.options import (allow_pickle_option, cluster_options, handle_errors, index_option, model_option,
                                   quiet, search_options)
from splade_os.cli.run import notice


@click.command()
@click.argument("text")
@index_option()
@cluster_options
@model_option("Model folder, hub id or NAME@VERSION (default: the model recorded in the index).")
@search_options(retries=True)
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.option("--fields", default=None, metavar="A,B",
              help="Document fields to show with each hit (comma-separated; '*': all of them).")
@click.option("--explain", is_flag=True,
              help="Show the tokens that made each hit's score: query x document weight, in the text or expansion.")
@handle_errors
def search(text, index, cluster, model, options, as_json, fields, explain):
    """Search an index with the inference-free query side (with --hybrid: fused with BM25).

    Example: splade-os search "what is lift?" --index docs -k 5 --filter "year>=2020" --fields year,url
    """
    shown = True if fields == "*" else [name.strip() for name in fields.split(",") if name.strip()] if fields else []
    target = cluster.connect().index(index)
    hits = target.search(text, encoder=target.query_encoder(model, show_progress=not quiet()),
                         options=options.but(source=shown, explain=explain or None))
    if hits.partial:
        notice(f"Warning: partial results: {hits.problem}; the hits are those of the "
               f"{hits.shards['successful']} shard searches that answered", "warning")
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo("no hits")
    roles = {target.title_field, target.text_field}
    for rank, hit in enumerate(hits, 1):
        label = " ".join((hit.title or hit.text).split())
        extra = [f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in hit.source.items()
                 if name not in roles] if shown else []
        click.echo(f"{rank:>3}  {hit.score:9.4f}  {hit.id:<12}  {label[:90]}" + ("  " + " ".join(extra) if extra else ""))
        if hit.explanation is not None:
            _print_explanation(hit)


def _print_explanation(hit, shown: int = 12) -> None:
    """The largest contributions of a hit, then how many more and their sum."""
    for part in hit.explanation[:shown]:
        where = "text" if part.in_text else "expansion"
        click.echo(f"       {part.product:9.4f} = {part.query_weight:.4f} x {part.document_weight:.4f}  "
                   f"{part.token!r:<18} {where}")
    rest = hit.explanation[shown:]
    total = sum(part.product for part in hit.explanation)
    if rest:
        click.echo(f"       {sum(part.product for part in rest):9.4f}   {len(rest)} more token(s)")
    click.echo(f"       {total:9.4f}   sum of {len(hit.explanation)} token(s)")


@click.command()
@click.argument("text")
@model_option("Model folder, hub id or NAME@VERSION (default: the bundled model, or the index's with --index).")
@index_option(required=False, help_text="Take the model, field, engine and clause cap from this index.")
@cluster_options
@click.option("--field", default="splade", show_default=True, help="The sparse field (without --index).")
@search_options(k_min=0, k_flags=("-k", "--size"), k_help="Number of hits the query asks for.")
@click.option("--max-clauses", default=None, type=click.IntRange(min=1),
              help="The cluster's indices.query.bool.max_clause_count (default 1024, or the cluster's with --index); "
                   "the highest weights are kept.")
@handle_errors
def query(text, model, index, cluster, field, options, max_clauses):
    """Print the search body for a query, for apps to send (no cluster needed without --index).

    With --hybrid: the NDJSON body of the `_msearch` request (BM25, then SPLADE), which the app
    fuses itself (docs/quality.md gives the rule).

    Example: splade-os query "what is lift?" --engine elasticsearch > body.json
    """
    from splade_os.models.resolve import resolve_model
    from splade_os.query.bodies import DEFAULT_MAX_CLAUSES, bm25_body
    from splade_os.query.hybrid import DEFAULT_FIELDS, msearch_payload

    target = cluster.connect().index(index) if index else None
    # The index's fusion (what it recorded, under what --hybrid-* set), else the defaults.
    fusion = options.hybrid and (target.fusion(options.hybrid) if target else options.hybrid.resolved())
    deep = options.but(k=max(options.k, fusion.depth)) if fusion else options
    if target:  # exactly the bodies the library sends for this index
        encoder = target.query_encoder(model, show_progress=not quiet())
        body = target.body(text, encoder=encoder, options=deep, max_clauses=max_clauses)
        bm25 = target.bm25_body(text, deep.k, deep.source, deep.filter, fusion and fusion.fields)
    else:
        encoder = resolve_model(model, show_progress=not quiet()).query_encoder
        body = encoder.to_dsl(text, cluster.engine or "opensearch", deep, field=field,
                              max_clauses=max_clauses or DEFAULT_MAX_CLAUSES)
        bm25 = bm25_body(text, deep.k, fusion and fusion.fields or DEFAULT_FIELDS, filter=deep.filter)
    if fusion is None:
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    if not quiet():
        click.echo(f"fuse the two lists with: {fusion.describe()} (docs/quality.md)", err=True)
    click.echo(msearch_payload(index, [bm25, body]).decode("utf-8"), nl=False)


def _judged(beir, split, queries, qrels):
    """(queries, judgments, corpus path or None) from --beir or --queries and --qrels."""
    from splade_os.corpus import beir as collections

    if beir:
        return collections.load_beir(beir, split)
    if queries and qrels:
        return collections.load_queries(queries), collections.load_qrels(qrels), None
    raise click.ClickException("give --beir, or both --queries and --qrels")


@click.command("eval")
@index_option()
@click.option("--beir", type=click.Path(file_okay=False, path_type=Path),
              help="BEIR folder: queries.jsonl, qrels/<split>.tsv, corpus.jsonl.")
@click.option("--split", default="test", show_default=True, help="qrels split with --beir.")
@click.option("--queries", type=click.Path(dir_okay=False, path_type=Path),
              help="Queries file (BEIR JSONL or id<TAB>text), instead of --beir.")
@click.option("--qrels", type=click.Path(dir_okay=False, path_type=Path),
              help="Qrels file (BEIR TSV or TREC), instead of --beir.")
@click.option("--corpus", type=click.Path(dir_okay=False, path_type=Path),
              help="Corpus for --exact (default: the --beir corpus).")
@click.option("--exact", is_flag=True, help="Also compute the metrics from an exact in-memory dot product, side by side.")
@click.option("--compare", is_flag=True,
              help="BM25, SPLADE and hybrid side by side, with per-query wins/losses and a paired significance test.")
@click.option("--keep-self-hits", is_flag=True,
              help="Count a hit whose id is the query's id (BEIR drops them where queries are corpus documents).")
@search_options(k_default=100, k_min=10, k_help="Hits retrieved per query.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("splade-os-eval"),
              show_default=True, help="Each run writes <index>-<time>.json here.")
@model_option("Model (default: the one recorded in the index).")
@allow_pickle_option
@cluster_options
@handle_errors
def eval_command(index, beir, split, queries, qrels, corpus, exact, compare, keep_self_hits, options, as_json,
                 results_dir, model, allow_pickle, cluster):
    """Evaluate an index on a test collection (the model card's metrics, graded nDCG, latency), searched
    as `search` would with the same options (two-phase, pruned, filtered, hybrid). Where queries are
    documents of the corpus, a hit on the query itself is dropped (BEIR's rule).

    Example: splade-os eval --index docs --beir data/cranfield --exact

    Example: splade-os eval --index docs --beir data/cranfield --compare
    """
    from splade_os.corpus.jsonl import CorpusFields
    from splade_os.evaluate import evaluate_exact, exact_doc_vectors
    from splade_os.models.resolve import model_of_index

    query_texts, judgments, corpus_path = _judged(beir, split, queries, qrels)
    corpus_path = corpus or corpus_path
    if exact and not corpus_path:
        raise click.ClickException("--exact needs the corpus: --corpus or --beir")
    if compare and exact:
        raise click.UsageError("--compare and --exact: run them one at a time")
    target = cluster.connect().index(index)
    encoder = target.query_encoder(model, show_progress=not quiet())
    if compare:
        return _compare(target, query_texts, judgments, encoder, options, keep_self_hits, as_json, results_dir)
    result = target.evaluate(query_texts, judgments, encoder=encoder, show_progress=not quiet(), options=options,
                             keep_self_hits=keep_self_hits)
    if exact:
        full = model_of_index(target, model, show_progress=not quiet(), allow_pickle=allow_pickle)
        vectors = exact_doc_vectors(corpus_path, full, show_progress=not quiet(), options=target.vector_options,
                                    fields=CorpusFields(text=target.text_field, title=target.title_field))
        result.exact_metrics = evaluate_exact(vectors, query_texts, judgments, encoder, k=options.k,
                                              keep_self_hits=keep_self_hits)
    record = {"index": index, "metrics": result.metrics, "exact_metrics": result.exact_metrics,
              "latency": result.latency, "queries": result.queries, "settings": result.settings}
    out = _save(record, results_dir, index)
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    _print_eval(result, index, options.k, out)


def _save(record: dict, results_dir: Path, index: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"{index}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=2))
    return out


# The metrics a comparison prints (all are in its JSON).
COMPARED = ("ndcg@10_graded", "ndcg@10", "mrr@10", "recall@10", "recall@5", "map@100")


def _compare(target, query_texts, judgments, encoder, options, keep_self_hits, as_json, results_dir) -> None:
    from splade_os.evaluate.compare import compare_index

    comparison = compare_index(target, query_texts, judgments, encoder, options=options, show_progress=not quiet(),
                               keep_self_hits=keep_self_hits)
    record = {"index": target.name, "compare": comparison.as_dict()}
    out = _save(record, results_dir, target.name)
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    results = comparison.results
    first = next(iter(results.values()))
    click.echo(f"{first.queries} queries, index {target.name!r}, k={options.k}; {first.settings['self_hits']['rule']}")
    click.echo(f"hybrid: {target.fusion(options.hybrid).describe()}")
    click.echo(f"{'metric':<18}" + "".join(f"{name:>9}" for name in results))
    for metric in COMPARED:
        click.echo(f"{metric:<18}" + "".join(f"{r.metrics[metric]:>9.4f}" for r in results.values()))
    click.echo(f"{'latency p50 ms':<18}" + "".join(f"{r.latency['p50_ms']:>9.1f}" for r in results.values()))
    click.echo("per query (graded nDCG@10; p: paired randomization test, two-sided):")
    for d in comparison.differences:
        click.echo("  " + d.as_text())
    click.echo(f"results: {out}")


def _print_eval(result, index: str, k: int, out: Path) -> None:
    click.echo(f"{result.queries} queries, index {index!r}, k={k}; {result.settings['self_hits']['rule']}")
    click.echo(f"{'metric':<22}{'index':>9}" + (f"{'exact':>9}{'diff':>9}" if result.exact_metrics else ""))
    for name, value in result.metrics.items():
        line = f"{name:<22}{value:>9.4f}"
        if result.exact_metrics and name in result.exact_metrics:
            line += f"{result.exact_metrics[name]:>9.4f}{value - result.exact_metrics[name]:>+9.4f}"
        click.echo(line)
    lat = result.latency
    click.echo(f"latency p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
               f"{lat['qps']:.1f} queries/s (sequential)")
    click.echo(f"results: {out}")


@click.command("calibrate")
@index_option()
@cluster_options
@click.option("--samples", type=click.IntRange(min=20), default=None,
              help="Documents sampled from the index, each one query (default 300).")
@click.option("--dry-run", is_flag=True, help="Measure and print, record nothing.")
@handle_errors
def calibrate(index, cluster, samples, dry_run):
    """Measure the hybrid fusion on queries made from the index's own documents and record it in the
    index (`ingest` does this at its end; run it after `enrich` or when the documents changed).

    Example: splade-os calibrate --index docs
    """
    target = cluster.connect().index(index)
    calibration = target.calibrate_fusion(samples=samples, record=not dry_run)
    click.echo(("measured (not recorded): " if dry_run else "recorded: ") + calibration.describe())
