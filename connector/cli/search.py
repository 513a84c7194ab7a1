"""Commands that search: `search`, `query` (the body an app sends), `eval`."""

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

    deep = options.but(k=max(options.k, options.hybrid.depth)) if options.hybrid else options
    if index:  # exactly the bodies the library sends for this index
        target = cluster.connect().index(index)
        encoder = target.query_encoder(model, show_progress=not quiet())
        body = target.body(text, encoder=encoder, options=deep, max_clauses=max_clauses)
        bm25 = target.bm25_body(text, deep.k, deep.source, deep.filter, options.hybrid and options.hybrid.fields)
    else:
        encoder = resolve_model(model, show_progress=not quiet()).query_encoder
        body = encoder.to_dsl(text, cluster.engine or "opensearch", deep, field=field,
                              max_clauses=max_clauses or DEFAULT_MAX_CLAUSES)
        bm25 = bm25_body(text, deep.k, options.hybrid and options.hybrid.fields or DEFAULT_FIELDS, filter=deep.filter)
    if options.hybrid is None:
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
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
@search_options(k_default=100, k_min=10, k_help="Hits retrieved per query.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("splade-os-eval"),
              show_default=True, help="Each run writes <index>-<time>.json here.")
@model_option("Model (default: the one recorded in the index).")
@allow_pickle_option
@cluster_options
@handle_errors
def eval_command(index, beir, split, queries, qrels, corpus, exact, options, as_json, results_dir, model,
                 allow_pickle, cluster):
    """Evaluate an index on a test collection (the model card's metrics, graded nDCG, latency), searched
    as `search` would with the same options (two-phase, pruned, filtered, hybrid).

    Example: splade-os eval --index docs --beir data/cranfield --exact
    """
    from splade_os.corpus.jsonl import CorpusFields
    from splade_os.evaluate import evaluate_exact, exact_doc_vectors
    from splade_os.models.resolve import model_of_index

    query_texts, judgments, corpus_path = _judged(beir, split, queries, qrels)
    corpus_path = corpus or corpus_path
    if exact and not corpus_path:
        raise click.ClickException("--exact needs the corpus: --corpus or --beir")
    target = cluster.connect().index(index)
    encoder = target.query_encoder(model, show_progress=not quiet())
    result = target.evaluate(query_texts, judgments, encoder=encoder, show_progress=not quiet(), options=options)
    if exact:
        full = model_of_index(target, model, show_progress=not quiet(), allow_pickle=allow_pickle)
        vectors = exact_doc_vectors(corpus_path, full, show_progress=not quiet(), options=target.vector_options,
                                    fields=CorpusFields(text=target.text_field, title=target.title_field))
        result.exact_metrics = evaluate_exact(vectors, query_texts, judgments, encoder, k=options.k)
    record = {"index": index, "metrics": result.metrics, "exact_metrics": result.exact_metrics,
              "latency": result.latency, "queries": result.queries, "settings": result.settings}
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"{index}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=2))
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    _print_eval(result, index, options.k, out)


def _print_eval(result, index: str, k: int, out: Path) -> None:
    click.echo(f"{result.queries} queries, index {index!r}, k={k}")
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
