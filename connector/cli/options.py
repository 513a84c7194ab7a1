"""The option sets the commands share, each written once and turned into one library object:
the cluster (`ClusterSpec`), a new index's settings (`IndexSettings`), how a search is made
(`SearchOptions`), and the one-line error handling every command has.
"""

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

from splade_os.cli.run import fail, local_node_url, notice, opaque_id, quiet  # noqa: F401 (quiet: for the commands)
from splade_os.common.errors import IngestInterrupted, InputError, SpladeOSError
from splade_os.query.engine import ENGINES


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
            notice(f"Interrupted: {str(e).split(': ', 1)[-1]}", "error")
            sys.exit(130)
        except SpladeOSError as e:
            if debug:
                raise
            fail(click.ClickException(str(e)))
        except KeyboardInterrupt:
            notice("Interrupted.", "error")
            sys.exit(130)
        except click.ClickException as e:
            fail(e)
        except (click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            if debug:
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            fail(click.ClickException(
                f"unexpected {type(e).__name__}: {first} (run with --debug for the traceback)"))

    return wrapper


@dataclass
class ClusterSpec:
    """The cluster options of a command; `connect()` builds the `Cluster` (the local node when no
    URL and no cloud id)."""

    url: Optional[str]
    engine: Optional[str]
    ca_certs: Optional[str]
    insecure: bool
    credentials_file: Optional[str]
    aws_region: Optional[str]
    api_key: Optional[str] = None
    bearer_token: Optional[str] = None
    client_cert: Optional[str] = None
    client_key: Optional[str] = None
    cloud_id: Optional[str] = None

    def __repr__(self) -> str:  # never the secrets
        return f"ClusterSpec(url={self.url!r}, engine={self.engine!r})"

    def configured(self) -> bool:
        """Whether a cluster was named (--url or SPLADE_OS_URL, or an Elastic Cloud id); if not, the
        local node serves."""
        return bool(self.url or self.cloud_id)

    def connect(self):
        from splade_os.cluster.client import connect

        url = self.url if self.configured() else local_node_url(self.engine or "opensearch")
        return connect(url, engine=self.engine, ca_certs=self.ca_certs, insecure=self.insecure,
                       credentials_file=self.credentials_file, aws_region=self.aws_region, api_key=self.api_key,
                       bearer_token=self.bearer_token, client_cert=self.client_cert, client_key=self.client_key,
                       cloud_id=self.cloud_id, opaque_id=opaque_id())


CLUSTER_OPTION_NAMES = ("url", "engine", "ca_certs", "insecure", "credentials_file", "aws_region", "api_key",
                        "bearer_token", "client_cert", "client_key", "cloud_id")


def cluster_options(f):
    """--url, --engine, --ca-certs, --insecure, --credentials-file, --aws-region, --api-key,
    --bearer-token, --client-cert, --client-key, --cloud-id -> `cluster` (a ClusterSpec).

    Secrets also come from SPLADE_OS_USER / SPLADE_OS_PASSWORD, SPLADE_OS_API_KEY and
    SPLADE_OS_BEARER_TOKEN, read by `connect` (so a Ray worker reads them from its own environment).
    """

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        spec = ClusterSpec(**{name: kwargs.pop(name) for name in CLUSTER_OPTION_NAMES})
        return f(*args, cluster=spec, **kwargs)

    secret = " (or env {}; a command line is visible to other users of the machine)"
    options = [
        click.option("--url", envvar=["SPLADE_OS_URL", "OPENSEARCH_URL"],
                     help="Cluster URL (env SPLADE_OS_URL). Default: the local node, started when needed."),
        click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
                     help="The cluster's engine (default: detected from its answer)."),
        click.option("--ca-certs", type=click.Path(dir_okay=False), help="CA bundle to verify the cluster's TLS certificate."),
        click.option("--insecure", is_flag=True, help="Skip TLS certificate verification (self-signed test clusters)."),
        click.option("--credentials-file", type=click.Path(dir_okay=False),
                     help="Credentials from a file: `user:password`, or JSON {user, password}, {api_key} or "
                          "{bearer_token} (env SPLADE_OS_CREDENTIALS_FILE)."),
        click.option("--aws-region", envvar="SPLADE_OS_AWS_REGION",
                     help="Sign requests with AWS SigV4 for this region (Amazon OpenSearch Service; needs splade-os[aws])."),
        click.option("--api-key", metavar="KEY",
                     help="Elasticsearch API key: the `encoded` value, or ID:KEY" + secret.format("SPLADE_OS_API_KEY") + "."),
        click.option("--bearer-token", metavar="TOKEN",
                     help="Send `Authorization: Bearer TOKEN` (an Elasticsearch access or service token, an OpenSearch "
                          "JWT)" + secret.format("SPLADE_OS_BEARER_TOKEN") + "."),
        click.option("--client-cert", type=click.Path(dir_okay=False),
                     help="Client certificate (PEM) for mutual TLS (env SPLADE_OS_CLIENT_CERT)."),
        click.option("--client-key", type=click.Path(dir_okay=False),
                     help="The client certificate's unencrypted key (PEM; env SPLADE_OS_CLIENT_KEY)."),
        click.option("--cloud-id", envvar="SPLADE_OS_CLOUD_ID",
                     help="An Elastic Cloud deployment's id, instead of --url (env SPLADE_OS_CLOUD_ID)."),
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



def options(decorators):
    """Apply click option decorators in the order written."""
    def apply(f):
        for option in reversed(decorators):
            f = option(f)
        return f
    return apply


def read_mapping(path: Optional[Path]):
    """The JSON of a --mapping file, or None."""
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise click.BadParameter(f"{path}: cannot be read ({e.strerror})", param_hint="--mapping") from None
    except ValueError as e:
        raise click.BadParameter(f"{path}: not valid JSON ({e})", param_hint="--mapping") from None


def index_settings_options(field: bool = True, when: str = ", when the index is created"):
    """--shards, --replicas, --refresh-interval, [--field], the document options and --mapping ->
    `settings` (an `IndexSettings`)."""

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, shards, replicas, refresh_interval, long_docs, max_windows, prune_top_k, prune_threshold,
                    source_features, mapping, field="splade", **kwargs):
            from splade_os.documents.settings import IndexSettings
            from splade_os.documents.vectors import DEFAULT_MAX_WINDOWS, VectorOptions

            vectors = None
            try:
                if any(v is not None for v in (long_docs, max_windows, prune_top_k, prune_threshold)):
                    vectors = VectorOptions(long_docs or "truncate", max_windows or DEFAULT_MAX_WINDOWS, prune_top_k,
                                            prune_threshold)
            except InputError as e:
                raise click.UsageError(str(e)) from None
            try:  # a mapping's content is refused in one line, before anything is asked of the cluster
                settings = IndexSettings(shards=shards, replicas=replicas, refresh_interval=refresh_interval,
                                         field=field, source_features=source_features, vectors=vectors,
                                         mapping=read_mapping(mapping))
            except InputError as e:
                raise click.ClickException(str(e)) from None
            return f(*args, settings=settings, **kwargs)

        return options([
            click.option("--shards", default=1, show_default=True, type=click.IntRange(min=1),
                         help=f"Primary shards{when}."),
            click.option("--replicas", default=0, show_default=True, type=click.IntRange(min=0),
                         help=f"Replicas{when}."),
            click.option("--refresh-interval", default="1s", show_default=True, help=f"Refresh interval{when}."),
            *([click.option("--field", default="splade", show_default=True, help=f"The sparse field{when}.")]
              if field else []),
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
            click.option("--mapping", type=click.Path(dir_okay=False, path_type=Path),
                         help='A JSON file typing your fields, in the engines\' form: {"properties": {"price": '
                              '{"type": "float"}}} (when the index is created; else added to its mapping).'),
        ])(wrapper)

    return decorate


def search_options(k_default: int = 10, k_min: int = 1, k_flags=("-k", "--top-k"), k_help: str = "Number of hits.",
                   retries: bool = False):
    """-k, --prune, --two-phase (--first-tokens, --rescore-window), --hybrid (--fusion,
    --hybrid-weight, --hybrid-depth, --rrf-k), --filter, --filter-json, and with `retries`
    --retry-budget and --allow-partial-results -> `options` (a `SearchOptions`)."""

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, k, prune, two_phase, first_tokens, rescore_window, hybrid, fusion, hybrid_weight,
                    hybrid_depth, rrf_k, filters, filter_json, retry_budget=None, allow_partial_results=False,
                    **kwargs):
            from splade_os.query.bodies import Pruning, TwoPhase
            from splade_os.query.filters import parse_condition, parse_filter_json
            from splade_os.query.hybrid import Hybrid
            from splade_os.query.options import SearchOptions

            if (first_tokens or rescore_window) and not two_phase:
                raise click.BadParameter("needs --two-phase", param_hint="--first-tokens / --rescore-window")
            fused = {"method": fusion, "weight": hybrid_weight, "depth": hybrid_depth, "rrf_k": rrf_k}
            fused = {name: value for name, value in fused.items() if value is not None}
            if fused and not hybrid:
                raise click.UsageError("--fusion, --hybrid-weight, --hybrid-depth and --rrf-k need --hybrid")
            try:
                conditions = [parse_condition(t) for t in filters] + [c for t in filter_json for c in parse_filter_json(t)]
            except InputError as e:
                raise click.BadParameter(str(e), param_hint="--filter / --filter-json") from None
            try:
                chosen = SearchOptions(
                    k=k, pruning=Pruning() if prune else None, hybrid=Hybrid(**fused) if hybrid else None,
                    two_phase=TwoPhase(first_tokens or TwoPhase.tokens, rescore_window or TwoPhase.window)
                    if two_phase else None, filter=conditions or None).but(
                    retry_budget=retry_budget, allow_partial_results=allow_partial_results or None)
            except InputError as e:
                raise click.UsageError(str(e)) from None
            return f(*args, options=chosen, **kwargs)

        return options([
            click.option(*k_flags, "k", default=k_default, show_default=True, type=click.IntRange(min=k_min),
                         help=k_help),
            click.option("--prune", is_flag=True,
                         help="Elasticsearch: prune frequent, light query tokens in a first pass, rescore the top "
                              "hits exactly."),
            click.option("--two-phase", is_flag=True,
                         help="For large indexes: a first pass with the query's highest-weight tokens, then a "
                              "rescore of its top hits with the full query."),
            click.option("--first-tokens", type=click.IntRange(min=1), default=None,
                         help="With --two-phase: tokens in the first pass (default: measured, see docs/scale.md)."),
            click.option("--rescore-window", type=click.IntRange(min=1), default=None,
                         help="With --two-phase: first-pass hits rescored with the full query (default: measured)."),
            click.option("--hybrid", is_flag=True, help="BM25 and SPLADE on the same index, fused (one _msearch)."),
            click.option("--fusion", type=click.Choice(["rrf", "minmax"]), default=None,
                         help="With --hybrid: reciprocal rank fusion (default) or a min-max normalised weighted sum."),
            click.option("--hybrid-weight", type=float, default=None,
                         help="With --hybrid: SPLADE's share, 0..1, BM25 gets the rest (default: the index's, "
                              "else 0.5 for rrf, 0.4 for minmax)."),
            click.option("--hybrid-depth", type=click.IntRange(min=1), default=None,
                         help="With --hybrid: hits fetched from each list before fusing (default 50)."),
            click.option("--rrf-k", type=click.IntRange(min=0), default=None,
                         help="With --fusion rrf: the rank constant (default 10)."),
            click.option("--filter", "filters", multiple=True, metavar="COND",
                         help="Only documents matching FIELD OP VALUE (OP: = != < <= > >=), e.g. category=books, "
                              "price<20; repeat to AND several (docs/documents.md)."),
            click.option("--filter-json", multiple=True, metavar="JSON",
                         help="Only documents matching this engine query (a JSON object, or a list of them)."),
            *([click.option("--retry-budget", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                            help="Seconds a search that shards failed to answer may spend pausing before it is "
                                 "asked again (default 7.7; 0: asked once)."),
               click.option("--allow-partial-results", is_flag=True,
                            help="When shards still fail after the retry budget, show what the other shards found "
                                 "(said on stderr) instead of failing.")] if retries else []),
        ])(wrapper)

    return decorate
