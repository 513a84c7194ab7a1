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
    """--url, --ca-certs and --insecure; credentials come from OPENSEARCH_USER / OPENSEARCH_PASSWORD."""
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

    if not url:
        from .local_node import start_background

        url = start_background(show_progress=not quiet)
        if not quiet:
            click.echo(f"Using the local OpenSearch node at {url}", err=True)
    return connect(url, ca_certs=ca_certs, insecure=insecure), url


def _source_of(model):
    # Record a local folder by its absolute path so other commands on this machine find it.
    if model in (None, "", "default"):
        return "default"
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


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
@index_option()
@connection_options
@model_option("Model folder or hub id (default: the bundled default model).")
@click.option("--device", default=None, help="cuda, cuda:1, cpu... (default: cuda when present, else cpu).")
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
def ingest(ctx, corpus, index, url, ca_certs, insecure, model, device, dtype, id_field, text_field, title_field,
           dead_letter, window, bulk_docs, shards, replicas, refresh_interval):
    """Encode a JSONL corpus and index it.

    Example: splade-os ingest corpus.jsonl --index docs
    """
    from .ingest import ingest as run_ingest
    from .model import resolve_model

    quiet = ctx.obj["quiet"]
    if not corpus.exists():
        raise click.ClickException(f"{corpus}: no such file")
    layout = resolve_model(model, show_progress=not quiet)
    client, url = _client(url, ca_certs, insecure, quiet)
    stats = run_ingest(
        client, url, corpus, index, layout, source=_source_of(model), id_field=id_field, text_field=text_field,
        title_field=title_field, dead_letter_path=dead_letter, device=device, dtype=dtype, window=window,
        bulk_docs=bulk_docs, shards=shards, replicas=replicas, refresh_interval=refresh_interval,
        show_progress=not quiet,
    )
    click.echo(
        f"indexed {stats.indexed}, rejected {stats.rejected}, {stats.seconds:.1f} s, "
        f"{stats.docs_per_second:.1f} docs/s; index {index!r} now holds {stats.count_after} documents"
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
@model_option("Model folder or hub id (default: the bundled default model).")
@click.option("--field", default="splade", show_default=True, help="The rank_features field.")
@click.option("-k", "--size", "size", default=10, show_default=True, help="Number of hits the query asks for.")
@click.option("--max-clauses", default=1024, show_default=True,
              help="Cluster's indices.query.bool.max_clause_count; the highest weights are kept.")
@click.pass_context
@handle_errors
def query(ctx, text, model, field, size, max_clauses):
    """Print the OpenSearch query DSL for a query (no cluster needed).

    Example: splade-os query "what is lift?" > body.json
    """
    from .model import resolve_model
    from .query import QueryEncoder

    encoder = QueryEncoder(resolve_model(model, show_progress=not ctx.obj["quiet"]))
    click.echo(json.dumps(encoder.to_dsl(text, field=field, size=size, max_clauses=max_clauses), ensure_ascii=False, indent=2))


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

    layout = resolve_model(model, show_progress=not ctx.obj["quiet"])
    identity = model_identity(layout, QueryEncoder(layout).hash, _source_of(model))
    client, url = _client(url, ca_certs, insecure, ctx.obj["quiet"])
    created = init_index(client, url, index, identity, shards=shards, replicas=replicas, refresh_interval=refresh_interval)
    click.echo(f"{'created' if created else 'already exists:'} index {index!r} for model {identity.name} ({identity.version})")


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
