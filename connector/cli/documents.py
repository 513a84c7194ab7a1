"""Commands that write documents: `ingest`, `enrich`, `init`, `reindex`."""

import functools
from dataclasses import replace
from pathlib import Path
from typing import Optional

import click

from splade_os.cli.options import (allow_pickle_option, cluster_options, handle_errors, index_option,
                                   index_settings_options, model_option, options, quiet)
from splade_os.cli.run import json_option, notice, print_json


def _shard(value: Optional[str], flag: str = "--shard"):
    if value is None:
        return None
    part, _, total = value.partition("/")
    if not (part.isdigit() and total.isdigit() and int(part) < int(total)):
        raise click.BadParameter(f"{value}: expected i/N with 0 <= i < N, e.g. 0/4", param_hint=flag)
    return int(part), int(total)


def _ray_options(address: Optional[str], workers: Optional[int], shard: Optional[str]):
    if address is None:
        if workers is not None:
            raise click.BadParameter("needs --ray", param_hint="--ray-workers")
        return None
    if shard is not None:
        raise click.BadParameter("--ray splits the corpus itself; drop --shard", param_hint="--shard")
    from splade_os.ingest.ray import RayOptions

    return RayOptions(address=address or None, workers=workers)


def _bulk(retry_deadline: float, bulk_workers: int, bulk_docs: int, bulk_mb: float):
    from splade_os.bulk.requests import BulkOptions, RetryPolicy

    return BulkOptions(docs=bulk_docs, max_bytes=int(bulk_mb * 1024 * 1024), workers=bulk_workers,
                       retry=RetryPolicy(deadline=retry_deadline))


# How documents are sent (`_bulk`): shared by ingest and enrich.
BULK_OPTIONS = [
    click.option("--retry-deadline", default=300.0, show_default=True,
                 help="Seconds the cluster may keep refusing a bulk request (429, 5xx, no answer) before the "
                      "run stops."),
    click.option("--bulk-workers", default=2, show_default=True, type=click.IntRange(min=1),
                 help="Bulk requests in flight at once."),
    click.option("--bulk-docs", default=500, show_default=True, type=click.IntRange(min=1),
                 help="Most documents per bulk request."),
    click.option("--bulk-mb", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
                 help="Most megabytes per bulk request (also at most half the cluster's http.max_content_length)."),
]
DEVICE_OPTIONS = [
    click.option("--device", default=None,
                 help="cuda, cuda:1, cpu, a list cuda:0,cuda:1 or all (one worker per GPU); default: cuda when "
                      "present, else cpu."),
    click.option("--dtype", default="auto", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
                 show_default=True, help="Encoder precision; auto = bf16 on GPU, fp32 on CPU."),
]


def ingest_options(f):
    """How an ingest reads, encodes, sends and recovers -> `options` (an `IngestOptions`)."""

    @index_settings_options()  # outside wraps(f), which would put f's option list in place of its own
    @functools.wraps(f)
    def wrapper(*args, keep, resume, checkpoint, retry_deadline, bulk_workers, bulk_docs, bulk_mb, shard, ray_address,
                ray_workers, device, dtype, id_field, text_field, title_field, dead_letter, window, settings,
                allow_pickle, **kwargs):
        from splade_os.corpus.jsonl import CorpusFields
        from splade_os.ingest.single import IngestOptions

        chosen = IngestOptions(
            fields=CorpusFields(id_field, text_field, title_field), index=settings,
            bulk=_bulk(retry_deadline, bulk_workers, bulk_docs, bulk_mb),
            window=window, device=device, dtype=dtype, dead_letter=dead_letter, checkpoint=checkpoint, resume=resume,
            keep=keep, shard=_shard(shard), ray=_ray_options(ray_address, ray_workers, shard),
            allow_pickle=allow_pickle)
        return f(*args, options=chosen, **kwargs)

    return options([
        click.option("--keep", type=click.IntRange(min=1), default=None,
                     help="With --alias: keep only the newest N indexes of the alias."),
        click.option("--resume", is_flag=True, help="Continue an interrupted ingest of the same input from its checkpoint."),
        click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
                     help="Checkpoint file (default: in the cache, named after the corpus and index)."),
        *BULK_OPTIONS,
        click.option("--shard", default=None, help="i/N: take only lines with (line-1) % N == i, so N hosts split one "
                                                   "corpus."),
        click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
                     help="Encode and send on a Ray cluster (auto, HOST:6379, ray://HOST:10001; no address: "
                          "RAY_ADDRESS or a local Ray): one encoder actor per GPU, each sending its own bulk requests "
                          "(needs splade-os[ray])."),
        click.option("--ray-workers", type=click.IntRange(min=1), default=None,
                     help="With --ray: encoder actors (default: one per GPU of the Ray cluster, else 1)."),
        *DEVICE_OPTIONS,
        click.option("--id-field", default="_id", show_default=True, help="JSON field holding the document id."),
        click.option("--text-field", default=None, help="JSON field holding the text (default: the index's, else text)."),
        click.option("--title-field", default=None,
                     help="JSON field holding the title, optional in a line (default: the index's, else title)."),
        click.option("--dead-letter", type=click.Path(dir_okay=False, path_type=Path),
                     help="Where rejected lines go (default: <corpus stem>.rejected.jsonl here)."),
        click.option("--window", default=1024, show_default=True, type=click.IntRange(min=1),
                     help="Documents encoded together (sorted by length inside); the checkpoint's step."),
        allow_pickle_option,
    ])(wrapper)


@click.command()
@click.argument("corpus", type=click.Path(dir_okay=False, path_type=Path))
@index_option(required=False, help_text="Index name (or use --alias).")
@click.option("--alias", default=None,
              help="Ingest into a new index ALIAS-<model>-<time>; move the alias to it only when all went well.")
@cluster_options
@model_option("Model folder, hub id, or NAME@VERSION from the cluster's registry (default: the index's, else the "
              "bundled one).")
@ingest_options
@click.option("--idf-from-corpus", is_flag=True,
              help="Query table = the IDF of this corpus (with the model's document route), pushed to the registry.")
@click.option("--idf-model-name", default=None, help="Registry name of the --idf-from-corpus model (default <index>-idf).")
@json_option("Print a JSON summary of the run instead of the line of text.")
@handle_errors
def ingest(corpus, index, alias, cluster, model, options, idf_from_corpus, idf_model_name, as_json):
    """Encode a JSONL corpus (or, with --ray, a Parquet file) and index it; every field of a line is kept.

    Example: splade-os ingest corpus.jsonl --index docs
    """
    from splade_os.ingest.single import ingest as run_ingest
    from splade_os.models.resolve import resolve_model

    if not corpus.exists():
        raise click.ClickException(f"{corpus}: no such file")
    if bool(index) == bool(alias):
        raise click.ClickException("give exactly one of --index or --alias")
    target = cluster.connect()
    chosen = resolve_model(model, target, show_progress=not quiet(), allow_pickle=options.allow_pickle) \
        if model else None
    if idf_from_corpus:
        from splade_os.models.corpus_idf import corpus_idf_model

        chosen = corpus_idf_model(target, corpus, idf_model_name or f"{index or alias}-idf", chosen, options.fields,
                                  show_progress=not quiet())
    stats = run_ingest(target, corpus, index, chosen, alias=alias, options=options, show_progress=not quiet())
    if as_json:
        print_json({"corpus": str(corpus), "index": stats.index, "alias": alias if stats.alias_switched else None,
                    "model": stats.model, "indexed": stats.indexed, "rejected": stats.rejected,
                    "count_after": stats.count_after, "cut": stats.cut, "seconds": round(stats.seconds, 3),
                    "docs_per_second": round(stats.docs_per_second, 2),
                    "dead_letter": str(stats.dead_letter_path) if stats.dead_letter_path else None,
                    "fusion": stats.fusion})
    else:
        click.echo(
            f"indexed {stats.indexed}, rejected {stats.rejected}, {stats.seconds:.1f} s, "
            f"{stats.docs_per_second:.1f} docs/s; index {stats.index!r} now holds {stats.count_after} documents "
            f"(_count after refresh)" + (f"; alias {alias!r} now points to it" if stats.alias_switched else "")
        )
    if stats.fusion and not quiet():
        notice(f"hybrid: {stats.fusion}")
    if stats.cut:
        notice(f"Note: {stats.cut_note}")
    if stats.rejected:
        raise click.ClickException(f"{stats.rejected} line(s) rejected; see {stats.dead_letter_path}")


def enrich_options(f):
    """What enrich encodes and how it reads, writes and follows -> `options` (an `EnrichOptions`)."""

    @functools.wraps(f)
    def wrapper(*args, text_field, title_field, field, follow, interval, batch, slice_, checkpoint, dead_letter,
                retry_deadline, bulk_workers, bulk_docs, bulk_mb, device, dtype, allow_pickle, **kwargs):
        from splade_os.ingest.enrich import EnrichOptions

        chosen = EnrichOptions(
            text_field=text_field, title_field=title_field, field=field, batch=batch,
            bulk=_bulk(retry_deadline, bulk_workers, bulk_docs, bulk_mb), device=device, dtype=dtype,
            dead_letter=dead_letter, checkpoint=checkpoint, slice=_shard(slice_, "--slice"), follow=follow,
            interval=interval, allow_pickle=allow_pickle)
        return f(*args, options=chosen, **kwargs)

    return options([
        click.option("--text-field", default=None,
                     help="The document field to encode (dotted for an object's field); needed the first time."),
        click.option("--title-field", default=None,
                     help="The field holding the title, encoded before the text when a document has it (default: "
                          "the index's, else title)."),
        click.option("--field", default="splade", show_default=True, help="The sparse field to add (the first time)."),
        click.option("--follow", is_flag=True,
                     help="Keep going: encode documents written since the last pass, every --interval seconds, until "
                          "Ctrl-C."),
        click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
                     help="Seconds between the passes of --follow."),
        click.option("--batch", default=256, show_default=True, type=click.IntRange(min=1),
                     help="Documents read, encoded and written together; the checkpoint's step."),
        click.option("--slice", "slice_", default=None,
                     help="i/N: take only the shards s with s % N == i, so N readers share one index."),
        click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
                     help="Checkpoint file (default: in the cache, named after the index); a rerun continues from it."),
        click.option("--dead-letter", type=click.Path(dir_okay=False, path_type=Path),
                     help="Where documents that cannot be encoded are listed (default: <index>.rejected.jsonl here)."),
        *BULK_OPTIONS, *DEVICE_OPTIONS, allow_pickle_option,
    ])(wrapper)


@click.command()
@click.argument("index")
@cluster_options
@model_option("Model folder, hub id or NAME@VERSION (default: the index's once enriched, else the bundled model).")
@enrich_options
@handle_errors
def enrich(index, cluster, model, options):
    """Add SPLADE vectors to an index an app already writes to, in place (its other fields untouched).

    The index's mapping gets the sparse field; every document's text is encoded and written with a
    conditional partial update, so a document the app changes meanwhile is encoded again, never
    overwritten. A rerun continues from the checkpoint and encodes only what changed.

    Example: splade-os enrich products --text-field description --title-field name
    """
    from splade_os.ingest.enrich import enrich as run_enrich
    from splade_os.models.resolve import resolve_model

    target = cluster.connect()
    chosen = resolve_model(model, target, show_progress=not quiet(), allow_pickle=options.allow_pickle) \
        if model else None
    stats = run_enrich(target, index, chosen, options=options, show_progress=not quiet())
    click.echo(f"encoded {stats.encoded}, already current {stats.current}, rejected {stats.rejected}, "
               f"changed meanwhile and encoded again {stats.conflicts}, deleted meanwhile {stats.deleted}; "
               f"{stats.passes} pass(es), {stats.seconds:.1f} s, {stats.docs_per_second:.1f} docs/s"
               + (" (stopped)" if stats.stopped else ""))
    if stats.fusion and not quiet():
        notice(f"hybrid: {stats.fusion}")
    if stats.stopped and not options.follow:
        notice(f"interrupted: settled up to the checkpoint {stats.checkpoint_path}; run the same command "
               "again to continue", "error")
        raise SystemExit(130)
    if stats.rejected:
        raise click.ClickException(f"{stats.rejected} document(s) rejected; see {stats.dead_letter_path}")


@click.command()
@index_option()
@cluster_options
@model_option("Model folder, hub id or NAME@VERSION (default: the bundled model).")
@index_settings_options(when="")
@click.option("--text-field", default="text", show_default=True, help="The document field holding the text.")
@click.option("--title-field", default="title", show_default=True, help="The document field holding the title.")
@handle_errors
def init(index, cluster, model, settings, text_field, title_field):
    """Create an index (and its ingest pipeline) for a model.

    Example: splade-os init --index docs --shards 3 --replicas 1 --mapping mapping.json
    """
    from splade_os.models.resolve import resolve_model

    target = cluster.connect()
    chosen = resolve_model(model, target, show_progress=not quiet())
    created = target.index(index).create(chosen, replace(settings, text_field=text_field, title_field=title_field))
    identity = chosen.identity
    click.echo(f"{'created' if created else 'already exists:'} index {index!r} for model {identity.name} "
               f"({identity.version})")


@click.command()
@click.argument("source")
@click.argument("target")
@index_settings_options(field=False, when=" of TARGET")
@cluster_options
@json_option("Print a JSON summary of the run instead of the line of text.")
@handle_errors
def reindex(source, target, settings, cluster, as_json):
    """Copy index SOURCE into a new index TARGET (vectors read back, or encoded again when SOURCE kept none).

    Every document keeps all its fields; TARGET takes SOURCE's mapping unless --mapping says otherwise.

    Example: splade-os reindex docs docs-v2 --source-features packed --prune-threshold 0.2
    """
    from splade_os.cluster.reindex import reindex as run_reindex

    connected = cluster.connect()
    stats = run_reindex(connected, source, target, settings, show_progress=not quiet())
    if as_json:
        print_json({"source": source, "index": target, "model": _model_fields(connected.index(target).model),
                    "method": stats.method, "documents": stats.documents, "rejected": 0,
                    "seconds": round(stats.seconds, 3),
                    "docs_per_second": round(stats.documents / stats.seconds, 2) if stats.seconds > 0 else 0.0})
        return
    click.echo(f"{stats.method}: {stats.documents} documents from {source!r} into {target!r} in {stats.seconds:.1f} s")


def _model_fields(recorded: dict) -> dict:
    """The name, version and source of the model an index records."""
    return {key: recorded.get(key) for key in ("name", "version", "source")}
