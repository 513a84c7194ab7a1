"""The `splade-os` command line: thin wrappers over the library functions.

Heavy modules (torch, transformers) are imported inside the commands that need them, so
`splade-os search` and `splade-os query` start quickly.
"""

import functools
import json
import sys
import warnings
from pathlib import Path

import click

from .errors import SpladeOSError


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"Warning: {message}", err=True)


def handle_errors(f):
    """Turn library errors into one-line `Error:` messages and a non-zero exit (traceback with --debug)."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = ctx.find_root().params.get("debug", False)
        try:
            return f(*args, **kwargs)
        except SpladeOSError as e:
            if type(e).__name__ == "IngestInterrupted" and not debug:
                click.echo(f"Interrupted: {str(e).split(': ', 1)[-1]}", err=True)
                sys.exit(130)
            if debug:
                raise
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except (click.ClickException, click.Abort):
            raise
        except Exception as e:
            if debug:
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            raise click.ClickException(
                f"unexpected {type(e).__name__}: {first} (run with --debug for the traceback)"
            ) from None

    return wrapper


def connection_options(f):
    """--url, --ca-certs, --insecure, --credentials-file, --aws-region; basic auth also from
    OPENSEARCH_USER / OPENSEARCH_PASSWORD. The last two reach `_client` through the context."""
    inner = f

    @functools.wraps(inner)
    def f(*args, credentials_file=None, aws_region=None, **kwargs):
        click.get_current_context().meta.update(credentials_file=credentials_file, aws_region=aws_region)
        return inner(*args, **kwargs)

    f = click.option("--aws-region", envvar="SPLADE_OS_AWS_REGION",
                     help="Sign requests with AWS SigV4 for this region (managed OpenSearch; needs splade-os[aws]).")(f)
    f = click.option("--credentials-file", type=click.Path(dir_okay=False),
                     help="Basic auth from a file: `user:password`, or JSON {user, password} (env OPENSEARCH_CREDENTIALS_FILE).")(f)
    f = click.option("--insecure", is_flag=True, help="Skip TLS certificate verification (self-signed test clusters).")(f)
    f = click.option("--ca-certs", type=click.Path(dir_okay=False), help="CA bundle to verify the cluster's TLS certificate.")(f)
    f = click.option(
        "--url",
        envvar="OPENSEARCH_URL",
        help="OpenSearch URL (env OPENSEARCH_URL). Default: the local node, started when needed.",
    )(f)
    return f


def model_option(help_text):
    return click.option("--model", "model", default=None, help=help_text)


def index_option(default=None):
    return click.option("--index", "-i", default=default, required=default is None, help="Index name.")


def _client(url, ca_certs, insecure, quiet):
    from .client import connect

    meta = click.get_current_context().meta

    if not url:
        from .local_node import start_background

        url = start_background(show_progress=not quiet)
        if not quiet:
            click.echo(f"Using the local OpenSearch node at {url}", err=True)
    return connect(url, ca_certs=ca_certs, insecure=insecure, credentials_file=meta.get("credentials_file"),
                   aws_region=meta.get("aws_region")), url


@click.group()
@click.version_option(package_name="splade-os")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes on stderr.")
@click.pass_context
def cli(ctx, debug, quiet):
    """splade-os: inference-free SPLADE retrieval on OpenSearch.

    Documents are encoded by the model's masked-LM and indexed into a rank_features field;
    queries need only a tokenizer and the model's static weight table.
    """
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    warnings.showwarning = _show_warning


@cli.command()
@click.argument("corpus", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--index", "-i", default=None, help="Index name (or use --alias).")
@click.option("--alias", default=None,
              help="Ingest into a new index ALIAS-<model>-<time>; move the alias to it only when all went well.")
@click.option("--keep", type=int, default=None, help="With --alias: keep only the newest N indexes of the alias.")
@click.option("--resume", is_flag=True, help="Continue an interrupted ingest of the same input from its checkpoint.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file (default: in the cache, named after the corpus and index).")
@click.option("--retry-deadline", default=300.0, show_default=True,
              help="Seconds a bulk request may keep failing (429, 5xx, connection errors) before the ingest stops.")
@click.option("--bulk-workers", default=2, show_default=True, help="Bulk requests in flight at once.")
@click.option("--shard", default=None, help="i/N: take only lines with (line-1) % N == i, so N hosts split one corpus.")
@connection_options
@model_option("Model folder, hub id, or NAME[@VERSION] from the cluster's registry (default: the bundled model).")
@click.option("--device", default=None,
              help="cuda, cuda:1, cpu, a list cuda:0,cuda:1 or all (one worker per GPU); default: cuda when present, else cpu.")
@click.option("--dtype", default="auto", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              show_default=True, help="Encoder precision; auto = bf16 on GPU, fp32 on CPU.")
@click.option("--id-field", default="_id", show_default=True, help="JSON field holding the document id.")
@click.option("--text-field", default="text", show_default=True, help="JSON field holding the text.")
@click.option("--title-field", default="title", show_default=True, help="JSON field holding the title (optional).")
@click.option("--dead-letter", type=click.Path(dir_okay=False, path_type=Path),
              help="Where rejected lines go (default: <corpus stem>.rejected.jsonl here).")
@click.option("--window", default=1024, show_default=True, help="Documents encoded together (sorted by length inside).")
@click.option("--bulk-docs", default=500, show_default=True, help="Documents per bulk request.")
@click.option("--shards", default=1, show_default=True, help="Primary shards, when the index is created.")
@click.option("--replicas", default=0, show_default=True, help="Replicas, when the index is created.")
@click.option("--refresh-interval", default="1s", show_default=True, help="Index refresh interval, when created.")
@click.pass_context
@handle_errors
def ingest(ctx, corpus, index, alias, keep, resume, checkpoint, retry_deadline, bulk_workers, shard, url, ca_certs, insecure,
           model, device, dtype, id_field, text_field, title_field, dead_letter, window, bulk_docs, shards, replicas,
           refresh_interval):
    """Encode a JSONL corpus and index it.

    Example: splade-os ingest corpus.jsonl --index docs
    """
    from .bulk import RetryPolicy
    from .ingest import ingest as run_ingest
    from .model import resolve_model

    quiet = ctx.obj["quiet"]
    if not corpus.exists():
        raise click.ClickException(f"{corpus}: no such file")
    if bool(index) == bool(alias):
        raise click.ClickException("give exactly one of --index or --alias")
    if shard is not None:
        part, _, total = shard.partition("/")
        if not (part.isdigit() and total.isdigit() and int(part) < int(total)):
            raise click.ClickException(f"--shard {shard}: expected i/N with 0 <= i < N, e.g. 0/4")
        shard = (int(part), int(total))
    client, url = _client(url, ca_certs, insecure, quiet)
    layout = resolve_model(model, show_progress=not quiet, client=client, url=url)
    stats = run_ingest(
        client, url, corpus, index, layout, id_field=id_field, text_field=text_field,
        title_field=title_field, dead_letter_path=dead_letter, device=device, dtype=dtype, window=window,
        bulk_docs=bulk_docs, bulk_workers=bulk_workers, shards=shards, replicas=replicas,
        refresh_interval=refresh_interval, show_progress=not quiet, resume=resume, checkpoint_path=checkpoint,
        retry=RetryPolicy(deadline=retry_deadline), alias=alias, keep=keep, shard=shard,
    )
    click.echo(
        f"indexed {stats.indexed}, rejected {stats.rejected}, {stats.seconds:.1f} s, "
        f"{stats.docs_per_second:.1f} docs/s; index {stats.index!r} now holds {stats.count_after} documents "
        f"(_count after refresh)" + (f"; alias {alias!r} now points to it" if stats.alias_switched else "")
    )
    if stats.rejected:
        raise click.ClickException(f"{stats.rejected} line(s) rejected; see {stats.dead_letter_path}")


@cli.command()
@click.argument("text")
@index_option()
@connection_options
@model_option("Model folder or hub id (default: the model recorded in the index).")
@click.option("-k", "--top-k", "k", default=10, show_default=True, help="Number of hits.")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.pass_context
@handle_errors
def search(ctx, text, index, url, ca_certs, insecure, model, k, as_json):
    """Search an index with the inference-free query side.

    Example: splade-os search "what is lift?" --index docs -k 5
    """
    from .search import query_encoder_for
    from .search import search as run_search

    client, url = _client(url, ca_certs, insecure, ctx.obj["quiet"])
    encoder, meta = query_encoder_for(client, url, index, model, show_progress=not ctx.obj["quiet"])
    hits = run_search(client, url, index, text, encoder, k=k, field=meta.get("field", "splade"))
    if as_json:
        click.echo(json.dumps([h.__dict__ for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo("no hits")
    for rank, hit in enumerate(hits, 1):
        label = hit.title or hit.text
        label = " ".join(label.split())
        click.echo(f"{rank:>3}  {hit.score:9.4f}  {hit.id:<12}  {label[:90]}")


@cli.command()
@click.argument("text")
@model_option("Model folder or hub id (default: the bundled default model, or the index's with --index).")
@click.option("--index", "-i", default=None,
              help="Check the model against this index (hash in its _meta) and use the cluster's clause cap.")
@connection_options
@click.option("--field", default="splade", show_default=True, help="The rank_features field.")
@click.option("-k", "--size", "size", default=10, show_default=True, help="Number of hits the query asks for.")
@click.option("--max-clauses", default=None, type=int,
              help="Cluster's indices.query.bool.max_clause_count (default 1024, or the cluster's with --index); "
                   "the highest weights are kept.")
@click.pass_context
@handle_errors
def query(ctx, text, model, index, url, ca_certs, insecure, field, size, max_clauses):
    """Print the OpenSearch query DSL for a query (no cluster needed without --index).

    Example: splade-os query "what is lift?" > body.json
    """
    from .model import resolve_model
    from .query import DEFAULT_MAX_CLAUSES, QueryEncoder

    quiet = ctx.obj["quiet"]
    if index:
        from .index import max_clause_count
        from .search import query_encoder_for

        client, url = _client(url, ca_certs, insecure, quiet)
        encoder, meta = query_encoder_for(client, url, index, model, show_progress=not quiet)
        field = meta.get("field", field)
        max_clauses = max_clauses or max_clause_count(client)
    else:
        encoder = QueryEncoder(resolve_model(model, show_progress=not quiet))
    body = encoder.to_dsl(text, field=field, size=size, max_clauses=max_clauses or DEFAULT_MAX_CLAUSES)
    click.echo(json.dumps(body, ensure_ascii=False, indent=2))


@cli.command()
@index_option()
@connection_options
@model_option("Model folder or hub id (default: the bundled default model).")
@click.option("--shards", default=1, show_default=True, help="Primary shards.")
@click.option("--replicas", default=0, show_default=True, help="Replicas.")
@click.option("--refresh-interval", default="1s", show_default=True, help="Index refresh interval.")
@click.pass_context
@handle_errors
def init(ctx, index, url, ca_certs, insecure, model, shards, replicas, refresh_interval):
    """Create an index and its ingest pipeline for a model.

    Example: splade-os init --index docs --shards 3 --replicas 1
    """
    from .index import init_index
    from .model import model_identity, resolve_model
    from .query import QueryEncoder

    client, url = _client(url, ca_certs, insecure, ctx.obj["quiet"])
    layout = resolve_model(model, show_progress=not ctx.obj["quiet"], client=client, url=url)
    identity = model_identity(layout, QueryEncoder(layout).hash)
    created = init_index(client, url, index, identity, shards=shards, replicas=replicas, refresh_interval=refresh_interval)
    click.echo(f"{'created' if created else 'already exists:'} index {index!r} for model {identity.name} ({identity.version})")


@cli.command()
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for checkpoints; the trained model goes to OUTPUT/final.")
@click.option("--data", help="Training rows: .jsonl/.json/.csv/.parquet file, a saved dataset folder, or a hub dataset id.")
@click.option("--query-column", default="query", show_default=True, help="Column with the query (--data).")
@click.option("--positive-column", default="positive", show_default=True, help="Column with the relevant document (--data).")
@click.option("--negative-column", multiple=True, help="Column(s) with hard negatives (--data); repeatable.")
@click.option("--beir", type=click.Path(file_okay=False, path_type=Path),
              help="Build pairs from a BEIR folder: queries + qrels/<split>.tsv, else title -> text of its corpus.")
@click.option("--beir-split", default="train", show_default=True, help="qrels split used with --beir.")
@click.option("--base", help="Masked-LM folder or hub id to start the document route from (default: the bundled one).")
@click.option("--init-idf", type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL corpus whose IDF starts the query table (default: ones).")
@click.option("--continue-from", help="An inference-free model (any --model form) to continue training.")
@click.option("--lr", default=2e-5, show_default=True, help="Learning rate of the transformer.")
@click.option("--static-lr", default=1e-3, show_default=True, help="Learning rate of the static query table.")
@click.option("--batch-size", default=16, show_default=True, help="Pairs per batch (in-batch negatives).")
@click.option("--epochs", default=1.0, show_default=True, help="Passes over the data.")
@click.option("--max-steps", default=-1, show_default=True, help="Stop after this many steps (-1: epochs decide).")
@click.option("--warmup-ratio", default=0.1, show_default=True, help="Fraction of steps with a rising learning rate.")
@click.option("--doc-reg", default=3e-4, show_default=True, help="FLOPS regularizer weight on documents.")
@click.option("--query-reg", default=0.0, show_default=True, help="FLOPS regularizer weight on queries.")
@click.option("--seed", default=42, show_default=True, help="Random seed.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
              help="auto: bf16 (or fp16) on GPU, fp32 on CPU.")
@click.option("--max-seq-length", type=int, help="Document truncation length (default: the model's).")
@click.option("--save-steps", default=500, show_default=True, help="Checkpoint every N steps.")
@click.option("--eval-beir", type=click.Path(file_okay=False, path_type=Path),
              help="BEIR folder evaluated (qrels/test.tsv) at the end, and every --eval-steps.")
@click.option("--eval-steps", type=int, help="Evaluate every N steps (with --eval-beir).")
@click.option("--resume", is_flag=True, help="Resume from the last checkpoint in --output.")
@click.pass_context
@handle_errors
def train(ctx, output, data, query_column, positive_column, negative_column, beir, beir_split, base, init_idf,
          continue_from, lr, static_lr, batch_size, epochs, max_steps, warmup_ratio, doc_reg, query_reg, seed,
          precision, max_seq_length, save_steps, eval_beir, eval_steps, resume):
    """Train an inference-free SPLADE model (SpladeLoss + in-batch negatives + FLOPS).

    Example: splade-os train --beir data/cranfield --init-idf data/cranfield/corpus.jsonl -o runs/cran
    """
    from . import train as training

    if bool(data) == bool(beir):
        raise click.ClickException("give exactly one of --data or --beir")
    rows = (training.load_pairs(data, query_column, positive_column, negative_column) if data
            else training.beir_pairs(beir, beir_split))
    model = training.starting_model(base, init_idf, continue_from, max_seq_length)
    evaluator = training.beir_evaluator(eval_beir) if eval_beir else None
    args = training.TrainArgs(
        output_dir=output, learning_rate=lr, static_learning_rate=static_lr, batch_size=batch_size, epochs=epochs,
        max_steps=max_steps, warmup_ratio=warmup_ratio, document_regularizer_weight=doc_reg,
        query_regularizer_weight=query_reg, seed=seed, precision=precision, max_seq_length=max_seq_length,
        save_steps=save_steps, eval_steps=eval_steps, resume=resume)
    result = training.train(model, rows, args, evaluator, show_progress=not ctx.obj["quiet"])
    click.echo(f"trained {result.steps} steps on {len(rows)} pairs in {result.seconds:.0f} s; "
               f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; query table changed by up to "
               f"{result.table_change:.4g}" if result.losses else f"trained {result.steps} steps")
    for name, value in sorted(result.metrics.items()):
        if name.endswith(("ndcg@10", "mrr@10", "map@100")):
            click.echo(f"{name}: {value:.4f}")
    click.echo(f"model: {result.model_dir}")


@cli.command("eval")
@index_option()
@click.option("--beir", type=click.Path(file_okay=False, path_type=Path), help="BEIR folder: queries.jsonl, qrels/<split>.tsv, corpus.jsonl.")
@click.option("--split", default="test", show_default=True, help="qrels split with --beir.")
@click.option("--queries", type=click.Path(dir_okay=False, path_type=Path), help="Queries file (BEIR JSONL or id<TAB>text), instead of --beir.")
@click.option("--qrels", type=click.Path(dir_okay=False, path_type=Path), help="Qrels file (BEIR TSV or TREC), instead of --beir.")
@click.option("--corpus", type=click.Path(dir_okay=False, path_type=Path), help="Corpus for --exact (default: the --beir corpus).")
@click.option("--exact", is_flag=True, help="Also compute the metrics from an exact in-memory dot product, side by side.")
@click.option("-k", "--top-k", "k", default=100, show_default=True, help="Hits retrieved per query.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("splade-os-eval"),
              show_default=True, help="Each run writes <index>-<time>.json here.")
@model_option("Model (default: the one recorded in the index).")
@connection_options
@click.pass_context
@handle_errors
def eval_command(ctx, index, beir, split, queries, qrels, corpus, exact, k, as_json, results_dir, model, url,
                 ca_certs, insecure):
    """Evaluate an index on a test collection (the model card's metrics, graded nDCG, latency).

    Example: splade-os eval --index docs --beir data/cranfield --exact
    """
    import time

    from . import evaluate
    from .model import resolve_model
    from .search import query_encoder_for

    quiet = ctx.obj["quiet"]
    if beir:
        query_texts, judgments, corpus_path = evaluate.load_beir(beir, split)
    elif queries and qrels:
        query_texts, judgments, corpus_path = evaluate.load_queries(queries), evaluate.load_qrels(qrels), None
    else:
        raise click.ClickException("give --beir, or both --queries and --qrels")
    corpus_path = corpus or corpus_path
    if exact and not corpus_path:
        raise click.ClickException("--exact needs the corpus: --corpus or --beir")
    client, url = _client(url, ca_certs, insecure, quiet)
    encoder, meta = query_encoder_for(client, url, index, model, show_progress=not quiet)
    result = evaluate.evaluate_index(client, url, index, query_texts, judgments, encoder, k=k,
                                     field=meta.get("field", "splade"), show_progress=not quiet)
    if exact:
        layout = resolve_model(model or meta["model"]["source"], show_progress=not quiet, client=client, url=url)
        vectors = evaluate.exact_doc_vectors(corpus_path, layout, show_progress=not quiet)
        result.exact_metrics = evaluate.evaluate_exact(vectors, query_texts, judgments, encoder, k=k)
    record = {"index": index, "metrics": result.metrics, "exact_metrics": result.exact_metrics,
              "latency": result.latency, "queries": result.queries, "settings": result.settings}
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"{index}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=2))
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    click.echo(f"{result.queries} queries, index {index!r}, k={k}")
    header = f"{'metric':<22}{'index':>9}" + (f"{'exact':>9}{'diff':>9}" if result.exact_metrics else "")
    click.echo(header)
    for name, value in result.metrics.items():
        line = f"{name:<22}{value:>9.4f}"
        if result.exact_metrics and name in result.exact_metrics:
            line += f"{result.exact_metrics[name]:>9.4f}{value - result.exact_metrics[name]:>+9.4f}"
        click.echo(line)
    lat = result.latency
    click.echo(f"latency p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
               f"{lat['qps']:.1f} queries/s (sequential)")
    click.echo(f"results: {out}")


@cli.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Registry name (lower-case letters, digits, '.', '_', '-').")
@click.option("--version", "version", type=int, default=None, help="Version number (default: the next one).")
@connection_options
@click.pass_context
@handle_errors
def push(ctx, model_dir, name, version, url, ca_certs, insecure):
    """Store a model folder in the cluster's registry as NAME@VERSION.

    Example: splade-os push ./my-model --name cranfield-splade
    """
    from .registry import push as run_push

    if not model_dir.exists():
        raise click.ClickException(f"{model_dir}: no such model folder")
    client, url = _client(url, ca_certs, insecure, ctx.obj["quiet"])
    meta = run_push(client, url, model_dir, name, version=version, show_progress=not ctx.obj["quiet"])
    size = sum(f["size"] for f in meta["files"])
    click.echo(f"pushed {meta['name']}@{meta['version']}: {len(meta['files'])} files, {size / 2**20:.1f} MiB, "
               f"hash {meta['hash'][:12]}")


@cli.command()
@click.argument("ref")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (default: the cache, reused when already pulled).")
@connection_options
@click.pass_context
@handle_errors
def pull(ctx, ref, output, url, ca_certs, insecure):
    """Restore NAME[@VERSION] from the cluster's registry, verifying every checksum.

    Example: splade-os pull cranfield-splade@2 -o ./model
    """
    from .registry import pull as run_pull

    client, url = _client(url, ca_certs, insecure, ctx.obj["quiet"])
    click.echo(run_pull(client, url, ref, dest=output, show_progress=not ctx.obj["quiet"]))


@cli.group()
def node():
    """Manage the local OpenSearch node (fetched from Maven Central, cached)."""


@node.command("start")
@click.pass_context
@handle_errors
def node_start(ctx):
    """Start the local node (or reuse the running one) and print its URL."""
    from .local_node import start_background

    click.echo(start_background(show_progress=not ctx.find_root().obj["quiet"]))


@node.command("stop")
@handle_errors
def node_stop():
    """Stop the local node."""
    from .local_node import stop_background

    click.echo("stopped" if stop_background() else "no local node was running")


@node.command("status")
@handle_errors
def node_status():
    """Print the local node's URL, or say that none is running."""
    from .local_node import running_url

    url = running_url()
    click.echo(url or "no local node is running")
    if not url:
        sys.exit(1)


@cli.command()
@click.option("--index", "-i", default="splade-os-sample", show_default=True, help="Index for the sample.")
@connection_options
@click.pass_context
@handle_errors
def demo(ctx, index, url, ca_certs, insecure):
    """Ingest the bundled sample (Cranfield) with the default model and run sample searches."""
    from .demo import run_demo

    client, url = _client(url, ca_certs, insecure, ctx.obj["quiet"])
    for line in run_demo(client, url, index, show_progress=not ctx.obj["quiet"]):
        click.echo(line)


def main():
    cli(obj={})


if __name__ == "__main__":
    main()
