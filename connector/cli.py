"""The `splade-os` command line: thin wrappers over the library.

Each command builds the library objects (a `Cluster`, a `SpladeIndex`, a `Model`), calls one
library function and prints its result; library errors become one-line `Error:` messages.
Heavy modules (torch, transformers) are imported only inside the commands that need them, so
`splade-os search` and `splade-os query` start quickly and work on the base install.
"""

import functools
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

from .engine import ENGINES
from .errors import IngestInterrupted, SpladeOSError
from .negatives import MiningOptions
from .pairs import pair_kinds
from .teacher import TeacherOptions
from .train import TrainArgs


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"Warning: {message}", err=True)


def handle_errors(f):
    """Turn library errors into one-line `Error:` messages and a non-zero exit (traceback with --debug)."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return f(*args, **kwargs)
        except IngestInterrupted as e:
            if debug:
                raise
            click.echo(f"Interrupted: {str(e).split(': ', 1)[-1]}", err=True)
            sys.exit(130)
        except SpladeOSError as e:
            if debug:
                raise
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:
            if debug:
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            raise click.ClickException(
                f"unexpected {type(e).__name__}: {first} (run with --debug for the traceback)") from None

    return wrapper


def _quiet() -> bool:
    return click.get_current_context().find_root().params.get("quiet", False)


@dataclass
class ClusterSpec:
    """The cluster options of a command; `connect()` builds the `Cluster` (the local node when no URL)."""

    url: Optional[str]
    engine: Optional[str]
    ca_certs: Optional[str]
    insecure: bool
    credentials_file: Optional[str]
    aws_region: Optional[str]

    def connect(self):
        from .cluster import connect

        url = self.url
        if not url:
            from .node import start_background

            url = start_background(engine=self.engine or "opensearch", show_progress=not _quiet())
            if not _quiet():
                click.echo(f"Using the local node at {url}", err=True)
        return connect(url, engine=self.engine, ca_certs=self.ca_certs, insecure=self.insecure,
                       credentials_file=self.credentials_file, aws_region=self.aws_region)


def cluster_options(f):
    """--url, --engine, --ca-certs, --insecure, --credentials-file, --aws-region -> `cluster` (a ClusterSpec).

    Basic auth also comes from SPLADE_OS_USER / SPLADE_OS_PASSWORD.
    """

    @functools.wraps(f)
    def wrapper(*args, url, engine, ca_certs, insecure, credentials_file, aws_region, **kwargs):
        return f(*args, cluster=ClusterSpec(url, engine, ca_certs, insecure, credentials_file, aws_region), **kwargs)

    options = [
        click.option("--url", envvar=["SPLADE_OS_URL", "OPENSEARCH_URL"],
                     help="Cluster URL (env SPLADE_OS_URL). Default: the local node, started when needed."),
        click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
                     help="The cluster's engine (default: detected from its answer)."),
        click.option("--ca-certs", type=click.Path(dir_okay=False), help="CA bundle to verify the cluster's TLS certificate."),
        click.option("--insecure", is_flag=True, help="Skip TLS certificate verification (self-signed test clusters)."),
        click.option("--credentials-file", type=click.Path(dir_okay=False),
                     help="Basic auth from a file: `user:password`, or JSON {user, password} (env SPLADE_OS_CREDENTIALS_FILE)."),
        click.option("--aws-region", envvar="SPLADE_OS_AWS_REGION",
                     help="Sign requests with AWS SigV4 for this region (Amazon OpenSearch Service; needs splade-os[aws])."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def model_option(help_text):
    return click.option("--model", "model", default=None, help=help_text)


allow_pickle_option = click.option(
    "--allow-pickle", is_flag=True,
    help="Load document weights that exist only as pytorch_model.bin (a pickle: only for a model you trust).")


def index_option(required=True, help_text="Index (or alias) name."):
    return click.option("--index", "-i", default=None, required=required, help=help_text)


@click.group()
@click.version_option(package_name="splade-os")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes on stderr.")
def cli(debug, quiet):
    """splade-os: inference-free SPLADE retrieval on OpenSearch and Elasticsearch.

    Documents are encoded by the model's masked-LM and indexed into a sparse field; queries need
    only a tokenizer and the model's static weight table.
    """
    warnings.showwarning = _show_warning
    # The clients log every 404 as a warning; splade-os asks for missing things on purpose and
    # reports real failures itself, on one line.
    for name in ("opensearch", "elastic_transport", "elasticsearch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _options(decorators):
    def apply(f):
        for option in reversed(decorators):
            f = option(f)
        return f
    return apply


def hybrid_options(f):
    """--hybrid, --fusion, --hybrid-weight, --hybrid-depth, --rrf-k -> `hybrid` (a `Hybrid`, or None)."""

    @functools.wraps(f)
    def wrapper(*args, hybrid, fusion, hybrid_weight, hybrid_depth, rrf_k, **kwargs):
        from .errors import InputError
        from .hybrid import Hybrid

        given = {"method": fusion, "weight": hybrid_weight, "depth": hybrid_depth, "rrf_k": rrf_k}
        given = {name: value for name, value in given.items() if value is not None}
        if given and not hybrid:
            raise click.UsageError("--fusion, --hybrid-weight, --hybrid-depth and --rrf-k need --hybrid")
        try:
            return f(*args, hybrid=Hybrid(**given) if hybrid else None, **kwargs)
        except InputError as e:
            raise click.UsageError(str(e)) from None

    return _options([
        click.option("--hybrid", is_flag=True, help="BM25 and SPLADE on the same index, fused (one _msearch)."),
        click.option("--fusion", type=click.Choice(["rrf", "minmax"]), default=None,
                     help="With --hybrid: reciprocal rank fusion (default) or a min-max normalised weighted sum."),
        click.option("--hybrid-weight", type=float, default=None,
                     help="With --fusion minmax: SPLADE's share, 0..1 (default 0.4; BM25 gets the rest)."),
        click.option("--hybrid-depth", type=click.IntRange(min=1), default=None,
                     help="With --hybrid: hits fetched from each list before fusing (default 50)."),
        click.option("--rrf-k", type=click.IntRange(min=0), default=None,
                     help="With --fusion rrf: the rank constant (default 10)."),
    ])(wrapper)


def document_options(f):
    """--long-docs, --max-windows, --prune-top-k, --prune-threshold, --source-features -> `documents`:
    (source_features or None, VectorOptions or None)."""

    @functools.wraps(f)
    def wrapper(*args, long_docs, max_windows, prune_top_k, prune_threshold, source_features, **kwargs):
        from .errors import InputError
        from .vectors import DEFAULT_MAX_WINDOWS, VectorOptions

        vectors = None
        if any(v is not None for v in (long_docs, max_windows, prune_top_k, prune_threshold)):
            try:
                vectors = VectorOptions(long_docs or "truncate", max_windows or DEFAULT_MAX_WINDOWS, prune_top_k,
                                        prune_threshold)
            except InputError as e:
                raise click.UsageError(str(e)) from None
        return f(*args, documents=(source_features, vectors), **kwargs)

    return _options([
        click.option("--long-docs", type=click.Choice(["truncate", "windows"]), default=None,
                     help="Documents longer than the model's length: truncate (default) or encode every window "
                          "of that length and max-pool them."),
        click.option("--max-windows", type=click.IntRange(min=1), default=None,
                     help="With --long-docs windows: the most token windows per document (default 8)."),
        click.option("--prune-top-k", type=click.IntRange(min=1), default=None,
                     help="Keep only each document's K highest feature weights."),
        click.option("--prune-threshold", type=click.FloatRange(min=0), default=None,
                     help="Drop document feature weights below T."),
        click.option("--source-features", type=click.Choice(["map", "packed", "none"]), default=None,
                     help="What _source keeps of the features: the map (default), a compact packed copy, or none."),
    ])(wrapper)


def filter_options(f):
    """--filter (repeatable) and --filter-json -> `filter`: a list of conditions and engine queries, or None."""

    @functools.wraps(f)
    def wrapper(*args, filters, filter_json, **kwargs):
        from .errors import InputError
        from .filters import parse_condition, parse_filter_json

        try:
            given = [parse_condition(text) for text in filters] + [c for text in filter_json
                                                                    for c in parse_filter_json(text)]
        except InputError as e:
            raise click.BadParameter(str(e), param_hint="--filter / --filter-json") from None
        return f(*args, filter=given or None, **kwargs)

    return _options([
        click.option("--filter", "filters", multiple=True, metavar="COND",
                     help="Only documents matching FIELD OP VALUE (OP: = != < <= > >=), e.g. category=books, "
                          "price<20; repeat to AND several (docs/documents.md)."),
        click.option("--filter-json", multiple=True, metavar="JSON",
                     help="Only documents matching this engine query (a JSON object, or a list of them)."),
    ])(wrapper)


def _read_mapping(path: Optional[Path]):
    """The JSON of a --mapping file, or None."""
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise click.BadParameter(f"{path}: cannot be read ({e.strerror})", param_hint="--mapping") from None
    except ValueError as e:
        raise click.BadParameter(f"{path}: not valid JSON ({e})", param_hint="--mapping") from None


mapping_option = click.option(
    "--mapping", type=click.Path(dir_okay=False, path_type=Path),
    help='A JSON file typing your fields, in the engines\' form: {"properties": {"price": {"type": "float"}}} '
         "(when the index is created; else added to its mapping).")


def _pruning(prune: bool):
    from .query import Pruning

    return Pruning() if prune else None


def _pair_kinds(ctx, param, value: str) -> str:
    from .errors import InputError

    try:
        pair_kinds(value)
    except InputError as e:
        raise click.BadParameter(str(e), param_hint="--pairs")
    return value


def _shard(value: Optional[str]):
    if value is None:
        return None
    part, _, total = value.partition("/")
    if not (part.isdigit() and total.isdigit() and int(part) < int(total)):
        raise click.BadParameter(f"{value}: expected i/N with 0 <= i < N, e.g. 0/4", param_hint="--shard")
    return int(part), int(total)


def _ray_options(address: Optional[str], workers: Optional[int], shard: Optional[str]):
    if address is None:
        if workers is not None:
            raise click.BadParameter("needs --ray", param_hint="--ray-workers")
        return None
    if shard is not None:
        raise click.BadParameter("--ray splits the corpus itself; drop --shard", param_hint="--shard")
    from .ray_ingest import RayOptions

    return RayOptions(address=address or None, workers=workers)


@cli.command()
@click.argument("corpus", type=click.Path(dir_okay=False, path_type=Path))
@index_option(required=False, help_text="Index name (or use --alias).")
@click.option("--alias", default=None,
              help="Ingest into a new index ALIAS-<model>-<time>; move the alias to it only when all went well.")
@click.option("--keep", type=click.IntRange(min=1), default=None,
              help="With --alias: keep only the newest N indexes of the alias.")
@click.option("--resume", is_flag=True, help="Continue an interrupted ingest of the same input from its checkpoint.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file (default: in the cache, named after the corpus and index).")
@click.option("--retry-deadline", default=300.0, show_default=True,
              help="Seconds the cluster may keep refusing a bulk request (429, 5xx, no answer) before the ingest stops.")
@click.option("--bulk-workers", default=2, show_default=True, type=click.IntRange(min=1), help="Bulk requests in flight at once.")
@click.option("--bulk-docs", default=500, show_default=True, type=click.IntRange(min=1), help="Most documents per bulk request.")
@click.option("--bulk-mb", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Most megabytes per bulk request (also at most half the cluster's http.max_content_length).")
@click.option("--shard", default=None, help="i/N: take only lines with (line-1) % N == i, so N hosts split one corpus.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Encode and send on a Ray cluster (auto, HOST:6379, ray://HOST:10001; no address: RAY_ADDRESS or "
                   "a local Ray): one encoder actor per GPU, each sending its own bulk requests (needs splade-os[ray]).")
@click.option("--ray-workers", type=click.IntRange(min=1), default=None,
              help="With --ray: encoder actors (default: one per GPU of the Ray cluster, else 1).")
@cluster_options
@model_option("Model folder, hub id, or NAME@VERSION from the cluster's registry (default: the index's, else the bundled one).")
@click.option("--device", default=None,
              help="cuda, cuda:1, cpu, a list cuda:0,cuda:1 or all (one worker per GPU); default: cuda when present, else cpu.")
@click.option("--dtype", default="auto", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              show_default=True, help="Encoder precision; auto = bf16 on GPU, fp32 on CPU.")
@click.option("--id-field", default="_id", show_default=True, help="JSON field holding the document id.")
@click.option("--text-field", default=None, help="JSON field holding the text (default: the index's, else text).")
@click.option("--title-field", default=None,
              help="JSON field holding the title, optional in a line (default: the index's, else title).")
@mapping_option
@click.option("--dead-letter", type=click.Path(dir_okay=False, path_type=Path),
              help="Where rejected lines go (default: <corpus stem>.rejected.jsonl here).")
@click.option("--window", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Documents encoded together (sorted by length inside); the checkpoint's step.")
@click.option("--shards", default=1, show_default=True, type=click.IntRange(min=1), help="Primary shards, when the index is created.")
@click.option("--replicas", default=0, show_default=True, type=click.IntRange(min=0), help="Replicas, when the index is created.")
@click.option("--refresh-interval", default="1s", show_default=True, help="Index refresh interval, when created.")
@click.option("--field", default="splade", show_default=True, help="The sparse field, when the index is created.")
@document_options
@click.option("--idf-from-corpus", is_flag=True,
              help="Query table = the IDF of this corpus (with the model's document route), pushed to the registry.")
@click.option("--idf-model-name", default=None, help="Registry name of the --idf-from-corpus model (default <index>-idf).")
@allow_pickle_option
@handle_errors
def ingest(corpus, index, alias, keep, resume, checkpoint, retry_deadline, bulk_workers, bulk_docs, bulk_mb, shard,
           ray_address, ray_workers, cluster, model, device, dtype, id_field, text_field, title_field, mapping,
           dead_letter, window, shards, replicas, refresh_interval, field, documents, idf_from_corpus, idf_model_name,
           allow_pickle):
    """Encode a JSONL corpus (or, with --ray, a Parquet file) and index it; every field of a line is kept.

    Example: splade-os ingest corpus.jsonl --index docs
    """
    from .bulk import BulkOptions, RetryPolicy
    from .corpus import CorpusFields
    from .index import IndexSettings
    from .ingest import IngestOptions
    from .ingest import ingest as run_ingest
    from .model import resolve_model

    if not corpus.exists():
        raise click.ClickException(f"{corpus}: no such file")
    if bool(index) == bool(alias):
        raise click.ClickException("give exactly one of --index or --alias")
    fields = CorpusFields(id_field, text_field, title_field)
    options = IngestOptions(
        fields=fields, index=IndexSettings(shards, replicas, refresh_interval, field, *documents,
                                           mapping=_read_mapping(mapping)),
        bulk=BulkOptions(bulk_docs, int(bulk_mb * 1024 * 1024), bulk_workers, RetryPolicy(deadline=retry_deadline)),
        window=window, device=device, dtype=dtype, dead_letter=dead_letter, checkpoint=checkpoint, resume=resume,
        keep=keep, shard=_shard(shard), ray=_ray_options(ray_address, ray_workers, shard), allow_pickle=allow_pickle)
    target = cluster.connect()
    chosen = resolve_model(model, target, show_progress=not _quiet(), allow_pickle=allow_pickle) if model else None
    if idf_from_corpus:
        from .corpus_idf import corpus_idf_model

        chosen = corpus_idf_model(target, corpus, idf_model_name or f"{index or alias}-idf", chosen, fields,
                                  show_progress=not _quiet())
    stats = run_ingest(target, corpus, index, chosen, alias=alias, options=options, show_progress=not _quiet())
    click.echo(
        f"indexed {stats.indexed}, rejected {stats.rejected}, {stats.seconds:.1f} s, "
        f"{stats.docs_per_second:.1f} docs/s; index {stats.index!r} now holds {stats.count_after} documents "
        f"(_count after refresh)" + (f"; alias {alias!r} now points to it" if stats.alias_switched else "")
    )
    if stats.cut:
        click.echo(f"Note: {stats.cut_note}", err=True)
    if stats.rejected:
        raise click.ClickException(f"{stats.rejected} line(s) rejected; see {stats.dead_letter_path}")


@cli.command()
@click.argument("text")
@index_option()
@cluster_options
@model_option("Model folder, hub id or NAME@VERSION (default: the model recorded in the index).")
@click.option("-k", "--top-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of hits.")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.option("--prune", is_flag=True,
              help="Elasticsearch: prune frequent, light query tokens in a first pass, rescore the top hits exactly.")
@click.option("--two-phase", is_flag=True,
              help="For large indexes: a first pass with the query's highest-weight tokens, then a rescore of its "
                   "top hits with the full query.")
@click.option("--first-tokens", type=click.IntRange(min=1), default=None,
              help="With --two-phase: tokens in the first pass (default: measured, see docs/scale.md).")
@click.option("--rescore-window", type=click.IntRange(min=1), default=None,
              help="With --two-phase: first-pass hits rescored with the full query (default: measured).")
@hybrid_options
@filter_options
@click.option("--fields", default=None, metavar="A,B",
              help="Document fields to show with each hit (comma-separated; '*': all of them).")
@handle_errors
def search(text, index, cluster, model, k, as_json, prune, two_phase, first_tokens, rescore_window, hybrid, filter,
           fields):
    """Search an index with the inference-free query side (with --hybrid: fused with BM25).

    Example: splade-os search "what is lift?" --index docs -k 5 --filter "year>=2020" --fields year,url
    """
    from .query import TwoPhase

    if (first_tokens or rescore_window) and not two_phase:
        raise click.BadParameter("needs --two-phase", param_hint="--first-tokens / --rescore-window")
    phases = TwoPhase(first_tokens or TwoPhase.tokens, rescore_window or TwoPhase.window) if two_phase else None
    target = cluster.connect().index(index)
    shown = True if fields == "*" else [name.strip() for name in fields.split(",") if name.strip()] if fields else []
    hits = target.search(text, k=k, encoder=target.query_encoder(model, show_progress=not _quiet()),
                         pruning=_pruning(prune), two_phase=phases, hybrid=hybrid, filter=filter, source=shown)
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


@cli.command()
@click.argument("text")
@model_option("Model folder, hub id or NAME@VERSION (default: the bundled model, or the index's with --index).")
@index_option(required=False, help_text="Take the model, field, engine and clause cap from this index.")
@cluster_options
@click.option("--field", default="splade", show_default=True, help="The sparse field (without --index).")
@click.option("-k", "--size", "size", default=10, show_default=True, type=click.IntRange(min=0),
              help="Number of hits the query asks for.")
@click.option("--max-clauses", default=None, type=click.IntRange(min=1),
              help="The cluster's indices.query.bool.max_clause_count (default 1024, or the cluster's with --index); "
                   "the highest weights are kept.")
@click.option("--prune", is_flag=True, help="Elasticsearch: the pruned body (first pass + exact rescore).")
@hybrid_options
@filter_options
@handle_errors
def query(text, model, index, cluster, field, size, max_clauses, prune, hybrid, filter):
    """Print the search body for a query, for apps to send (no cluster needed without --index).

    With --hybrid: the NDJSON body of the `_msearch` request (BM25, then SPLADE), which the app
    fuses itself (docs/quality.md gives the rule).

    Example: splade-os query "what is lift?" --engine elasticsearch > body.json
    """
    from .model import resolve_model
    from .query import DEFAULT_MAX_CLAUSES

    from .filters import filter_clauses
    from .hybrid import DEFAULT_FIELDS

    bm25_fields = DEFAULT_FIELDS
    if index:
        target = cluster.connect().index(index)
        encoder = target.query_encoder(model, show_progress=not _quiet())
        field, engine, cap = target.field, target.cluster.engine, max_clauses or target.cluster.max_clause_count
        clauses, bm25_fields = target.filter_clauses(filter), (target.title_field, target.text_field)
    else:
        encoder = resolve_model(model, show_progress=not _quiet()).query_encoder
        engine, cap = cluster.engine or "opensearch", max_clauses or DEFAULT_MAX_CLAUSES
        clauses = filter_clauses(filter)
    hits = size if hybrid is None else max(size, hybrid.depth)
    body = encoder.to_dsl(text, field=field, size=hits, max_clauses=cap, engine=engine, pruning=_pruning(prune),
                          filter=clauses)
    if hybrid is None:
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    from .hybrid import msearch_payload
    from .query import bm25_body

    bm25 = bm25_body(text, hits, hybrid.fields or bm25_fields, filter=clauses)
    click.echo(msearch_payload(index, [bm25, body]).decode("utf-8"), nl=False)


@cli.command()
@index_option()
@cluster_options
@model_option("Model folder, hub id or NAME@VERSION (default: the bundled model).")
@click.option("--shards", default=1, show_default=True, type=click.IntRange(min=1), help="Primary shards.")
@click.option("--replicas", default=0, show_default=True, type=click.IntRange(min=0), help="Replicas.")
@click.option("--refresh-interval", default="1s", show_default=True, help="Index refresh interval.")
@click.option("--field", default="splade", show_default=True, help="The sparse field.")
@click.option("--text-field", default="text", show_default=True, help="The document field holding the text.")
@click.option("--title-field", default="title", show_default=True, help="The document field holding the title.")
@mapping_option
@document_options
@handle_errors
def init(index, cluster, model, shards, replicas, refresh_interval, field, text_field, title_field, mapping,
         documents):
    """Create an index (and its ingest pipeline) for a model.

    Example: splade-os init --index docs --shards 3 --replicas 1
    """
    from .index import IndexSettings
    from .model import resolve_model

    target = cluster.connect()
    chosen = resolve_model(model, target, show_progress=not _quiet())
    settings = IndexSettings(shards, replicas, refresh_interval, field, *documents, mapping=_read_mapping(mapping),
                             title_field=title_field, text_field=text_field)
    created = target.index(index).create(chosen, settings)
    identity = chosen.identity
    click.echo(f"{'created' if created else 'already exists:'} index {index!r} for model {identity.name} "
               f"({identity.version})")


@cli.command()
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for checkpoints; the trained model goes to OUTPUT/final.")
@click.option("--data", help="Training rows: .jsonl/.json/.csv/.parquet file, a saved dataset folder, or a hub dataset id.")
@click.option("--query-column", default="query", show_default=True, help="Column with the query (--data).")
@click.option("--positive-column", default="positive", show_default=True, help="Column with the relevant document (--data).")
@click.option("--negative-column", multiple=True, help="Column(s) with hard negatives (--data); repeatable.")
@click.option("--beir", type=click.Path(file_okay=False, path_type=Path),
              help="Build pairs from a BEIR folder: queries + qrels/<split>.tsv, else self-supervised pairs of its corpus.")
@click.option("--beir-split", default="train", show_default=True, help="qrels split used with --beir.")
@click.option("--pairs", default="lead", show_default=True, callback=_pair_kinds,
              help="Self-supervised pairs (--beir without training qrels): lead = the title, or the first "
                   "words -> the rest; ict = a span -> the rest; crop = two independent spans; title = title -> text; "
                   "kinds combine with '+' (lead+ict: a pair of each per document).")
@click.option("--hard-negatives", type=click.Choice(["none", "bm25", "splade"]), default="none", show_default=True,
              help="Mine negatives from --index: top BM25 (title+text) or SPLADE hits that are not the positive.")
@click.option("--negatives", "negative_count", default=1, show_default=True, type=click.IntRange(min=1),
              help="Hard negatives per query.")
@click.option("--negatives-skip", default=MiningOptions.skip, show_default=True, type=click.IntRange(min=0),
              help="Top hits passed over before negatives are taken (they are often unlabelled positives).")
@click.option("--teacher", metavar="MODEL",
              help="Distil a teacher instead of calling mined hits negatives: 'default' (all-MiniLM-L6-v2, the "
                   "teacher extra) or a sentence-transformers bi-encoder folder or hub id. It scores candidates "
                   "mined from --index by --hard-negatives (bm25 when none).")
@click.option("--teacher-mix", default=TeacherOptions.mix, show_default=True, type=click.FloatRange(0, 1),
              help="The teacher's share of each label; the rest is the starting model's own score.")
@click.option("--teacher-candidates", default=TeacherOptions.candidates, show_default=True,
              type=click.IntRange(min=1), help="Scored candidates per training query, drawn from the pool.")
@click.option("--teacher-pool", default=TeacherOptions.pool, show_default=True, type=click.IntRange(min=1),
              help="Hits mined per training query for the teacher to score.")
@click.option("--teacher-temperature", default=TrainArgs.distill_temperature, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Temperature of the distillation loss (labels are on the start's score scale).")
@index_option(required=False, help_text="Index to mine negatives from (ingested from the --beir corpus when missing).")
@cluster_options
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
@click.option("--target-doc-dims", type=click.FloatRange(min=1), default=None,
              help="Set the FLOPS weight by feedback so documents end near this many active dimensions "
                   "(default: the start's).")
@click.option("--doc-reg", type=click.FloatRange(min=0), default=None,
              help="A fixed FLOPS weight on documents instead (the seed model's was 3e-4), with the trainer's warm-up.")
@click.option("--query-reg", default=0.0, show_default=True, help="FLOPS regularizer weight on queries.")
@click.option("--seed", default=42, show_default=True, help="Random seed.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
              help="auto: bf16 (or fp16) on GPU, fp32 on CPU.")
@click.option("--max-seq-length", type=int, help="Document truncation while training (the saved model keeps its own).")
@click.option("--save-steps", default=500, show_default=True, help="Checkpoint every N steps.")
@click.option("--validation-queries", default=200, show_default=True, type=click.IntRange(min=0),
              help="Training queries held out to validate the start and each checkpoint (0: no validation).")
@click.option("--eval-beir", type=click.Path(file_okay=False, path_type=Path),
              help="Validate on this BEIR folder's qrels/test.tsv instead of held-out pairs.")
@click.option("--eval-steps", type=int, help="Validate every N steps (default: 4 times, and at the end).")
@click.option("--interpolate", default=TrainArgs.interpolation, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="Save the start's weights moved only this share of the way to the trained ones "
                   "(weight interpolation; the gate judges the result). 1: as trained.")
@click.option("--force", is_flag=True, help="Save the best trained checkpoint even if it did not beat the start.")
@click.option("--resume", is_flag=True, help="Resume from the last checkpoint in --output.")
@handle_errors
def train(output, data, query_column, positive_column, negative_column, beir, beir_split, pairs, hard_negatives,
          negative_count, negatives_skip, teacher, teacher_mix, teacher_candidates, teacher_pool,
          teacher_temperature, index, cluster, base, init_idf, continue_from, lr, static_lr, batch_size,
          epochs, max_steps, warmup_ratio, target_doc_dims, doc_reg, query_reg, seed, precision, max_seq_length,
          save_steps, validation_queries, eval_beir, eval_steps, interpolate, force, resume):
    """Train an inference-free SPLADE model; keep it only if it beats the start on held-out queries.

    Exits with status 1 when no checkpoint beat the start (see --force).

    Example: splade-os train --beir data/cranfield --init-idf data/cranfield/corpus.jsonl
    --hard-negatives bm25 --index cranfield -o runs/cran
    """
    from . import train as training

    mining = MiningOptions.named(hard_negatives, negative_count, negatives_skip)
    teaching = TeacherOptions.named(teacher, teacher_mix, teacher_candidates, teacher_pool, mining)
    if teaching:
        mining = None  # the teacher scores the mined pool: nothing is called a negative
    recipe = training.Recipe(data, (query_column, positive_column, *negative_column), beir, beir_split, pairs, base,
                             init_idf, continue_from, mining, index, validation_queries, eval_beir=eval_beir,
                             teacher=teaching)
    args = training.TrainArgs(
        output_dir=output, learning_rate=lr, static_learning_rate=static_lr, batch_size=batch_size, epochs=epochs,
        max_steps=max_steps, warmup_ratio=warmup_ratio, document_regularizer_weight=doc_reg,
        target_doc_dims=target_doc_dims, query_regularizer_weight=query_reg, seed=seed, precision=precision,
        max_seq_length=max_seq_length, save_steps=save_steps, eval_steps=eval_steps, force=force, resume=resume,
        distill_temperature=teacher_temperature, interpolation=interpolate)
    result = training.run(recipe, args, cluster.connect() if mining or teaching else None, show_progress=not _quiet())
    click.echo(f"trained {result.steps} steps on {result.pairs} pairs in {result.seconds:.0f} s"
               + (f"; loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}" if result.losses else ""))
    if result.validation:
        start, best = result.validation["start"], result.validation["best"]
        click.echo(f"validation ({result.validation['queries']} queries): ndcg@10 {start['ndcg@10']:.4f} -> "
                   f"{best['ndcg@10']:.4f}, document active dims {start['corpus_active_dims']:.0f} -> "
                   f"{best['corpus_active_dims']:.0f} (step {result.validation['best_step']})")
    click.echo(f"model: {result.model_dir}")


@cli.command("eval")
@index_option()
@click.option("--beir", type=click.Path(file_okay=False, path_type=Path), help="BEIR folder: queries.jsonl, qrels/<split>.tsv, corpus.jsonl.")
@click.option("--split", default="test", show_default=True, help="qrels split with --beir.")
@click.option("--queries", type=click.Path(dir_okay=False, path_type=Path), help="Queries file (BEIR JSONL or id<TAB>text), instead of --beir.")
@click.option("--qrels", type=click.Path(dir_okay=False, path_type=Path), help="Qrels file (BEIR TSV or TREC), instead of --beir.")
@click.option("--corpus", type=click.Path(dir_okay=False, path_type=Path), help="Corpus for --exact (default: the --beir corpus).")
@click.option("--exact", is_flag=True, help="Also compute the metrics from an exact in-memory dot product, side by side.")
@click.option("-k", "--top-k", "k", default=100, show_default=True, type=click.IntRange(min=10), help="Hits retrieved per query.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("splade-os-eval"),
              show_default=True, help="Each run writes <index>-<time>.json here.")
@click.option("--prune", is_flag=True, help="Elasticsearch: evaluate the pruned query (first pass + exact rescore).")
@hybrid_options
@model_option("Model (default: the one recorded in the index).")
@allow_pickle_option
@cluster_options
@handle_errors
def eval_command(index, beir, split, queries, qrels, corpus, exact, k, as_json, results_dir, prune, hybrid, model,
                 allow_pickle, cluster):
    """Evaluate an index on a test collection (the model card's metrics, graded nDCG, latency).

    Example: splade-os eval --index docs --beir data/cranfield --exact
    """
    from . import beir as collections
    from . import evaluate
    from .model import model_of_index

    if beir:
        query_texts, judgments, corpus_path = collections.load_beir(beir, split)
    elif queries and qrels:
        query_texts, judgments, corpus_path = collections.load_queries(queries), collections.load_qrels(qrels), None
    else:
        raise click.ClickException("give --beir, or both --queries and --qrels")
    corpus_path = corpus or corpus_path
    if exact and not corpus_path:
        raise click.ClickException("--exact needs the corpus: --corpus or --beir")
    target = cluster.connect().index(index)
    encoder = target.query_encoder(model, show_progress=not _quiet())
    result = target.evaluate(query_texts, judgments, k=k, encoder=encoder, show_progress=not _quiet(),
                             pruning=_pruning(prune), hybrid=hybrid)
    if exact:
        full = model_of_index(target, model, show_progress=not _quiet(), allow_pickle=allow_pickle)
        from .corpus import CorpusFields

        vectors = evaluate.exact_doc_vectors(corpus_path, full, show_progress=not _quiet(),
                                             options=target.vector_options,
                                             fields=CorpusFields(text=target.text_field, title=target.title_field))
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


@cli.command()
@click.argument("source")
@click.argument("target")
@click.option("--shards", default=1, show_default=True, type=click.IntRange(min=1), help="Primary shards of TARGET.")
@click.option("--replicas", default=0, show_default=True, type=click.IntRange(min=0), help="Replicas of TARGET.")
@click.option("--refresh-interval", default="1s", show_default=True, help="Refresh interval of TARGET.")
@mapping_option
@document_options
@cluster_options
@handle_errors
def reindex(source, target, shards, replicas, refresh_interval, mapping, documents, cluster):
    """Copy index SOURCE into a new index TARGET (vectors read back, or encoded again when SOURCE kept none).

    Example: splade-os reindex docs docs-v2 --source-features packed --prune-threshold 0.2
    """
    from .index import IndexSettings
    from .reindex import reindex as run_reindex

    settings = IndexSettings(shards, replicas, refresh_interval, "splade", *documents, mapping=_read_mapping(mapping))
    stats = run_reindex(cluster.connect(), source, target, settings, show_progress=not _quiet())
    click.echo(f"{stats.method}: {stats.documents} documents from {source!r} into {target!r} in {stats.seconds:.1f} s")


@cli.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Registry name (lower-case letters, digits, '.', '_', '-').")
@click.option("--version", "version", type=click.IntRange(min=1), default=None, help="Version number (default: the next one).")
@cluster_options
@handle_errors
def push(model_dir, name, version, cluster):
    """Store a model folder in the cluster's registry as NAME@VERSION.

    Example: splade-os push ./my-model --name cranfield-splade
    """
    from .registry import push as run_push

    if not model_dir.exists():
        raise click.ClickException(f"{model_dir}: no such model folder")
    meta = run_push(cluster.connect(), model_dir, name, version=version, show_progress=not _quiet())
    size = sum(f["size"] for f in meta["files"])
    click.echo(f"pushed {meta['name']}@{meta['version']}: {len(meta['files'])} files, {size / 2**20:.1f} MiB, "
               f"hash {meta['hash'][:12]}")


@cli.command()
@click.argument("ref")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (default: the cache, reused when already pulled).")
@cluster_options
@handle_errors
def pull(ref, output, cluster):
    """Restore NAME[@VERSION] from the cluster's registry, verifying every checksum.

    Example: splade-os pull cranfield-splade@2 -o ./model
    """
    from .registry import pull as run_pull

    click.echo(run_pull(cluster.connect(), ref, dest=output, show_progress=not _quiet()))


@cli.group()
def node():
    """Manage the local search node (fetched from Maven Central, cached): OpenSearch or Elasticsearch."""


def node_engine_option(f):
    return click.option("--engine", type=click.Choice(list(ENGINES)), default="opensearch",
                        show_default=True, help="Which engine's local node.")(f)


@node.command("start")
@node_engine_option
@click.option("--nodes", type=click.IntRange(min=1), default=None,
              help="Nodes in the local cluster (default: 1, or reuse whatever runs).")
@handle_errors
def node_start(engine, nodes):
    """Start the local node (or reuse the running one) and print its URL (several: comma-separated)."""
    from .node import start_background

    click.echo(start_background(engine=engine, nodes=nodes, show_progress=not _quiet()))


@node.command("stop")
@node_engine_option
@handle_errors
def node_stop(engine):
    """Stop the local node (its data is kept)."""
    from .node import stop_background

    click.echo("stopped" if stop_background(engine) else f"no local {engine} node was running")


@node.command("status")
@node_engine_option
@handle_errors
def node_status(engine):
    """Print the local node's URL, or say that none is running (exit status 1)."""
    from .node import running_url

    url = running_url(engine)
    click.echo(url or f"no local {engine} node is running")
    if not url:
        sys.exit(1)


@node.command("fetch")
@node_engine_option
@handle_errors
def node_fetch(engine):
    """Download and unpack the node's distribution into the cache (no start); print its folder."""
    from .node import ensure_distribution

    click.echo(ensure_distribution(engine, show_progress=not _quiet()))


@cli.command()
@click.option("--index", "-i", default="splade-os-sample", show_default=True, help="Index for the sample.")
@cluster_options
@handle_errors
def demo(index, cluster):
    """Ingest the bundled sample (Cranfield) with the default model and run sample searches."""
    from .demo import run_demo

    for line in run_demo(cluster.connect(), index, show_progress=not _quiet()):
        click.echo(line)


def main():
    cli()


if __name__ == "__main__":
    main()
