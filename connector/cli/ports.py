"""`splade-os query-side`: the query side as files for apps in other languages (docs/apps.md)."""

import sys
from pathlib import Path

import click

from splade_os.cli.options import cluster_options, handle_errors, model_option, quiet


@click.group("query-side")
def query_side():
    """The query side as files, for apps in other languages: a conformance pack, and the reference runner."""


def _encoder(model, cluster):
    """The query encoder of a pack folder (query-side.json) or of any model `--model` takes."""
    from splade_os.query.pack import QUERY_SIDE_FILE, load_side

    if model and ((Path(model) / QUERY_SIDE_FILE).exists() or Path(model).name == QUERY_SIDE_FILE):
        return load_side(model)
    from splade_os.models.resolve import is_registry_ref, resolve_model

    target = cluster.connect() if model and is_registry_ref(model) else None
    return resolve_model(model, target, show_progress=not quiet()).query_encoder


@query_side.command()
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The folder to write (query-side.json, tokenizer.json, conformance.jsonl).")
@model_option("Model folder, hub id, NAME@VERSION, or a pack folder (default: the bundled model).")
@click.option("--queries", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="More query texts (JSONL with a \"text\" per line, e.g. BEIR's queries.jsonl); repeatable.")
@click.option("--no-conformance", is_flag=True, help="Write only the query side, no conformance file.")
@click.option("--overwrite", is_flag=True, help="Replace a pack already in the folder.")
@cluster_options
@handle_errors
def pack(output, model, queries, no_conformance, overwrite, cluster):
    """Write a model's query side as files, and a conformance pack: queries with their exact features and
    bodies (the bundled Cranfield queries, hand-made hard cases, and --queries).

    Example: splade-os query-side pack --model runs/cran/final -o pack/
    """
    from splade_os.query.pack import default_texts, write_pack

    encoder = _encoder(model, cluster)
    texts = None if no_conformance else default_texts(list(queries))
    write_pack(encoder, output, texts, overwrite=overwrite)
    click.echo(f"wrote the query side of {encoder.name or 'the model'} (hash {encoder.hash[:12]})"
               + ("" if no_conformance else f" and {len(texts)} conformance queries") + f" to {output}")


@query_side.command()
@model_option("Model folder, hub id, NAME@VERSION, or a pack folder (default: the bundled model).")
@click.option("--index", "-i", default=None,
              help="Read the query side of this index from the cluster instead (its field is the default field).")
@cluster_options
@handle_errors
def run(model, index, cluster):
    """Answer JSON lines on stdin ({"text", "max_clauses", "size", "field"}) with their features and bodies:
    the Python side of `scripts/query-port`, the protocol every port follows.

    Example: echo '{"text": "what is lift?"}' | splade-os query-side run --model pack/
    """
    from splade_os.query.pack import serve

    field = None
    if index:
        if model:
            raise click.UsageError("give --model or --index, not both")
        target = cluster.connect().index(index)
        encoder, field = target.query_encoder(), target.field
    else:
        encoder = _encoder(model, cluster)

    def write(line):
        sys.stdout.write(line)
        sys.stdout.flush()

    serve(encoder, sys.stdin, write, field=field)
