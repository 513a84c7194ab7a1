"""A search cluster: its client, its URL (shown without credentials), its engine, and one place
that turns the engine client's exceptions into splade-os errors.

Every request splade-os makes goes through `Cluster.request`, a plain REST call (method, path,
body) sent by the engine's own Python client (opensearch-py for OpenSearch, elasticsearch-py 8
for Elasticsearch), which brings connection pooling, TLS, authentication and SigV4. The same
paths and bodies serve both engines wherever the engines agree; `splade_os.query.engine` says where
they differ.

Secrets never appear in messages: URLs are shown without their user-info part and the password
is only handed to the client.

Example:
    >>> cluster = connect("http://localhost:9200")
    >>> cluster.engine.name, cluster.max_clause_count
    ('opensearch', 1024)
    >>> hits = cluster.index("docs").search("what is lift?")
"""

import functools
import json
import os
import warnings
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from splade_os.query.engine import ELASTICSEARCH, OPENSEARCH, Engine, engine_named
from splade_os.common.errors import ClusterError, InputError

TRANSIENT_STATUSES = (429, 502, 503, 504)
DEFAULT_MAX_CLAUSES = 1024  # indices.query.bool.max_clause_count when the cluster does not say
DEFAULT_MAX_CONTENT_LENGTH = 100 * 1024 * 1024  # http.max_content_length's default on both engines


def split_urls(url: str) -> list:
    """The URLs in `url`: one, or several separated by commas (the nodes of one cluster)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def redact_url(url: str) -> str:
    """The URL (or comma-separated URLs) without user name and password."""
    if "," in url:
        return ",".join(redact_url(part) for part in split_urls(url))
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def read_credentials(path: str):
    """(user, password) from a file holding `user:password` on its first line, or JSON {"user", "password"}."""
    try:
        text = open(path, encoding="utf-8").read().strip()
    except OSError as e:
        raise InputError(f"{path}: cannot read the credentials file ({e.strerror})") from None
    if text.startswith("{"):
        try:
            data = json.loads(text)
            return str(data["user"]), str(data["password"])
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{path}: expected JSON with \"user\" and \"password\"") from None
    user, sep, password = text.splitlines()[0].partition(":") if text else ("", "", "")
    if not sep:
        raise InputError(f"{path}: expected `user:password` on the first line")
    return user, password


def _env(*names: str) -> Optional[str]:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _size_bytes(value) -> Optional[int]:
    """'100mb' -> 104857600 (the engines' byte-size settings)."""
    text = str(value).strip().lower()
    for suffix, factor in (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("b", 1)):
        if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
            return int(float(text[: -len(suffix)]) * factor)
    return int(text) if text.isdigit() else None


class _Failure:
    """What went wrong with a request, in engine-neutral terms."""

    def __init__(self, kind: str, status: Optional[int] = None, error_type: Optional[str] = None,
                 reason: str = ""):
        self.kind, self.status, self.error_type, self.reason = kind, status, error_type, reason


def _short(text: str) -> str:
    for marker in ("Connection refused", "Name or service not known", "certificate verify failed", "timed out"):
        if marker in text:
            return marker
    return text.splitlines()[0][:160] if text else ""


def _error_fields(body) -> tuple:
    """(error type, reason) from an engine's JSON error body."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            cause = (error.get("root_cause") or [{}])[0] if isinstance(error.get("root_cause"), list) else {}
            return error.get("type"), error.get("reason") or cause.get("reason") or error.get("type") or ""
        if error is not None:
            return None, str(error)
    return None, str(body or "")[:200]


class _OpenSearchClient:
    """Requests through opensearch-py."""

    engine = OPENSEARCH

    def __init__(self, client):
        from opensearchpy import exceptions

        self.client, self.exceptions = client, exceptions

    def request(self, method, path, params, body, headers):
        return self.client.transport.perform_request(method, path, params=params, body=body, headers=headers)

    def probe(self, path: str, opaque_id: Optional[str] = None) -> dict:
        """Response headers of a GET (lower-cased names) from the first node that answers.

        Each node is asked once, without the transport's retries (which would repeat a refused
        connection several times); a stopped node of several is skipped.
        """
        transport = self.client.transport
        for attempt in range(len(transport.hosts)):
            try:
                status, headers, _ = transport.get_connection().perform_request(
                    "GET", path, headers={"x-opaque-id": opaque_id} if opaque_id else None)
                return {k.lower(): v for k, v in headers.items()}
            except self.exceptions.ConnectionError:
                if attempt == len(transport.hosts) - 1:
                    raise

    def failure(self, error) -> Optional[_Failure]:
        e = self.exceptions
        if isinstance(error, e.SSLError):
            return _Failure("tls", reason=_short(str(error.info or error)))
        if isinstance(error, e.ConnectionTimeout):
            return _Failure("timeout")
        if isinstance(error, e.ConnectionError):
            return _Failure("connection", reason=_short(str(error.info or error)))
        if isinstance(error, e.TransportError):
            status = error.status_code if isinstance(error.status_code, int) else None
            error_type, reason = _error_fields(error.info)
            return _Failure("http", status, error_type or (error.error if isinstance(error.error, str) else None),
                            reason or str(error.error))
        return None


class _ElasticsearchClient:
    """Requests through elasticsearch-py 8."""

    engine = ELASTICSEARCH

    def __init__(self, client):
        import elastic_transport
        import elasticsearch

        self.client, self.es, self.transport = client, elasticsearch, elastic_transport

    def request(self, method, path, params, body, headers):
        headers = {"accept": "application/json", **(headers or {})}
        if body is not None and "content-type" not in headers:
            headers["content-type"] = "application/json"
        response = self.client.perform_request(method, path, params=params, headers=headers, body=body)
        if method == "HEAD":
            return 200 <= response.meta.status < 300
        return response.body

    def failure(self, error) -> Optional[_Failure]:
        t, es = self.transport, self.es
        if isinstance(error, t.TlsError):
            return _Failure("tls", reason=_short(str(error)))
        if isinstance(error, t.ConnectionTimeout):
            return _Failure("timeout")
        if isinstance(error, t.ConnectionError):
            return _Failure("connection", reason=_short(str(error)))
        if isinstance(error, es.UnsupportedProductError):
            return _Failure("product", reason=str(error.message))
        if isinstance(error, es.ApiError):
            error_type, reason = _error_fields(error.body)
            return _Failure("http", error.meta.status, error_type, reason or str(error.message))
        if isinstance(error, t.TransportError):
            return _Failure("connection", reason=_short(str(error)))
        return None


class Cluster:
    """One OpenSearch or Elasticsearch cluster, reached through its engine's Python client.

    Build it with `connect`. Settings that do not change while splade-os runs (the engine's
    version, the clause cap, the request size limit, the ingest processors) are read once, when
    first needed.

    Attributes:
        url: the cluster URL without credentials (what messages show).
        engine: `splade_os.query.engine.OPENSEARCH` or `ELASTICSEARCH`.
        opaque_id: the `X-Opaque-Id` header every request carries (None: none), which the engines
            show in their tasks API and slow logs; `with_opaque_id` gives a handle with another.
        client: the engine's own client (`opensearchpy.OpenSearch` or `elasticsearch.Elasticsearch`),
            for calls splade-os does not wrap.
    """

    def __init__(self, backend, url: str, opaque_id: Optional[str] = None):
        self._backend = backend
        self.client = backend.client
        self.engine: Engine = backend.engine
        self.url = redact_url(url)
        self.opaque_id = opaque_id

    def __repr__(self) -> str:
        return f"Cluster({self.url!r}, engine={self.engine.name!r})"

    def __reduce__(self):
        # Another process (a Ray worker) gets its own client: it connects again with the same
        # arguments, credentials included; an engine client itself cannot be pickled.
        arguments = getattr(self, "_connect_arguments", None)
        if arguments is None:
            raise TypeError(f"{self!r} was not made by splade_os.cluster.connect, so it cannot be sent to "
                            "another process")
        return _reconnect, (arguments,)

    # -- requests ---------------------------------------------------------------------------

    def with_opaque_id(self, opaque_id: Optional[str]) -> "Cluster":
        """The same cluster (and client) whose requests carry `opaque_id` as their X-Opaque-Id."""
        other = object.__new__(Cluster)  # not copy.copy: that would pickle, i.e. connect again (`__reduce__`)
        other.__dict__.update(self.__dict__, opaque_id=opaque_id)
        arguments = getattr(self, "_connect_arguments", None)
        if arguments is not None:
            other._connect_arguments = {**arguments, "opaque_id": opaque_id}
        return other

    def request(self, method: str, path: str, body: Any = None, params: Optional[dict] = None,
                action: Optional[str] = None, ndjson: bool = False, opaque_id: Optional[str] = None) -> Any:
        """Send one REST request; returns the parsed JSON answer (a bool for HEAD).

        Args:
            method, path: e.g. "GET", "/docs/_search".
            body: a JSON-able object, or bytes sent as they are.
            params: query-string parameters.
            action: what the request does, for the error message ("searching 'docs'").
            ndjson: the body is newline-delimited JSON (`_bulk`).
            opaque_id: this request's X-Opaque-Id (default: the cluster's `opaque_id`).

        Raises:
            ClusterError: no answer, or an HTTP error status; `status`, `error_type` and
                `transient` say which.
        """
        headers = {"content-type": "application/x-ndjson"} if ndjson else {}
        if opaque_id or self.opaque_id:
            headers["x-opaque-id"] = opaque_id or self.opaque_id
        try:
            return self._backend.request(method, path, params, body, headers)
        except Exception as error:
            failure = self._backend.failure(error)
            if failure is None:
                raise
            raise self._error(failure, action or f"{method} {path}") from None

    def _error(self, failure: _Failure, action: str) -> ClusterError:
        url, label = self.url, self.engine.label
        if failure.kind == "tls":
            return ClusterError(f"{url}: TLS verification failed ({failure.reason}); pass the CA bundle with "
                                "--ca-certs, or --insecure for a self-signed test node")
        if failure.kind == "timeout":
            return ClusterError(f"{url}: {action}: the cluster did not answer in time", transient=True)
        if failure.kind == "connection":
            return ClusterError(f"{url}: cannot reach the cluster ({failure.reason}); check --url / SPLADE_OS_URL, "
                                "or start a local node with `splade-os node start`", transient=True)
        if failure.kind == "product":
            return ClusterError(f"{url}: not an Elasticsearch cluster ({failure.reason}); drop --engine to detect it")
        status = failure.status
        if status == 401:
            return ClusterError(f"{url}: {label} refused the credentials (HTTP 401); set SPLADE_OS_USER and "
                                "SPLADE_OS_PASSWORD, or --credentials-file", status=401)
        if status == 403:
            return ClusterError(f"{url}: {action}: the user is not allowed to (HTTP 403: {failure.reason})",
                                status=403, error_type=failure.error_type)
        return ClusterError(f"{url}: {action} failed (HTTP {status}: {failure.reason or failure.error_type})",
                            status=status, error_type=failure.error_type, transient=status in TRANSIENT_STATUSES)

    def exists(self, path: str) -> bool:
        """Whether a HEAD of `path` (an index, an alias `/_alias/NAME`, a document) finds it."""
        return bool(self.request("HEAD", path, action=f"checking {path}"))

    def index(self, name: str):
        """The handle of index (or alias) `name` on this cluster (see `splade_os.cluster.index.SpladeIndex`)."""
        from splade_os.cluster.index import SpladeIndex

        return SpladeIndex(self, name)

    # -- what is read once ---------------------------------------------------------------------

    @functools.cached_property
    def version(self) -> str:
        """The engine's version, e.g. "3.5.0" (asked of the node answering)."""
        nodes = self.request("GET", "/_nodes/_local", params={"filter_path": "nodes.*.version"},
                             action="reading the node version")
        return next(iter(nodes.get("nodes", {}).values()), {}).get("version", "unknown")

    @functools.cached_property
    def settings(self) -> dict:
        """The cluster's flat settings, defaults included (empty when the user may not read them)."""
        try:
            answer = self.request("GET", "/_cluster/settings", params={"include_defaults": "true",
                                                                        "flat_settings": "true"})
        except ClusterError as e:
            if e.status in (401, 403):  # a restricted user: the defaults are safe
                return {}
            raise
        merged = {}
        for scope in ("defaults", "persistent", "transient"):
            merged.update(answer.get(scope, {}))
        return merged

    @functools.cached_property
    def max_clause_count(self) -> int:
        """`indices.query.bool.max_clause_count`: the most leaf clauses one query may hold."""
        value = self.settings.get("indices.query.bool.max_clause_count")
        return int(value) if value is not None else DEFAULT_MAX_CLAUSES

    @functools.cached_property
    def max_content_length(self) -> int:
        """`http.max_content_length` in bytes: the largest request body the cluster takes."""
        value = _size_bytes(self.settings.get("http.max_content_length", ""))
        return value or DEFAULT_MAX_CONTENT_LENGTH

    @functools.cached_property
    def has_ingest_checks(self) -> bool:
        """Whether ingest pipelines can run splade-os's checks here (fail/set/remove processors + painless).

        A minimal Elasticsearch zip has none; then the client makes the same checks itself.
        """
        try:
            answer = self.request("GET", "/_nodes/ingest,plugins",
                                  params={"filter_path": "nodes.*.ingest.processors.type,nodes.*.modules.name"},
                                  action="reading the ingest processors")
        except ClusterError as e:
            if e.status in (401, 403):  # a restricted user: managed OpenSearch has them, and painless
                return self.engine is OPENSEARCH
            raise
        for node in answer.get("nodes", {}).values():
            processors = {p.get("type") for p in node.get("ingest", {}).get("processors", [])}
            modules = {m.get("name") for m in node.get("modules", [])}
            if not ({"fail", "set", "remove"} <= processors and "lang-painless" in modules):
                return False
        return bool(answer.get("nodes"))


def _reconnect(arguments: dict) -> "Cluster":
    return connect(**arguments)


CONNECTIONS_PER_NODE = 16  # kept open per node: above the bulk workers plus a few searching threads


def connect(
    url: str,
    *,
    engine: Optional[str] = None,
    user: Optional[str] = None,
    password: Optional[str] = None,
    ca_certs: Optional[str] = None,
    insecure: bool = False,
    timeout: float = 60,
    credentials_file: Optional[str] = None,
    aws_region: Optional[str] = None,
    aws_service: str = "es",
    opaque_id: Optional[str] = None,
) -> Cluster:
    """A `Cluster` for `url`, checked with one request; the engine is detected unless given.

    Args:
        url: e.g. "http://localhost:9200" or "https://user:pw@search.example.com:9200"; several
            nodes of one cluster as comma-separated URLs ("http://127.0.0.1:9200,http://127.0.0.1:9201"):
            requests are spread over them and a node that does not answer is skipped. Credentials
            come from the first URL.
        engine: "opensearch" or "elasticsearch"; detected from the cluster's answer when None
            (Elasticsearch marks every answer with an `X-Elastic-Product` header).
        user, password: basic auth; default $SPLADE_OS_USER / $SPLADE_OS_PASSWORD (or the
            older $OPENSEARCH_USER / $OPENSEARCH_PASSWORD), else the URL's user info.
        ca_certs: CA bundle to verify the server's certificate with.
        insecure: skip TLS verification (self-signed certificates); warns.
        timeout: seconds per request.
        credentials_file: basic auth from a file (`user:password`, or JSON); default
            $SPLADE_OS_CREDENTIALS_FILE.
        aws_region, aws_service: sign requests with AWS SigV4 for Amazon OpenSearch Service ("es")
            or OpenSearch Serverless ("aoss"); needs the `aws` extra (boto3).
        opaque_id: the X-Opaque-Id header of every request (e.g. "my-app/reindex-42"), to find
            them in the engines' tasks API and slow logs; `Cluster.with_opaque_id` changes it.

    Raises:
        ClusterError: unreachable, TLS failure, refused credentials, or not the engine given.
        InputError: a malformed URL or credentials file.
    """
    arguments = dict(url=url, engine=engine, user=user, password=password, ca_certs=ca_certs, insecure=insecure,
                     timeout=timeout, credentials_file=credentials_file, aws_region=aws_region, aws_service=aws_service,
                     opaque_id=opaque_id)
    cluster = _connect(**arguments)
    cluster._connect_arguments = arguments
    return cluster


def _connect(url: str, *, engine, user, password, ca_certs, insecure, timeout, credentials_file, aws_region,
             aws_service, opaque_id) -> Cluster:
    parts = _first_url(url)
    credentials_file = credentials_file or _env("SPLADE_OS_CREDENTIALS_FILE", "OPENSEARCH_CREDENTIALS_FILE")
    if credentials_file and user is None:
        user, password = read_credentials(credentials_file)
    user = user if user is not None else _env("SPLADE_OS_USER", "OPENSEARCH_USER")
    password = password if password is not None else _env("SPLADE_OS_PASSWORD", "OPENSEARCH_PASSWORD")
    if parts.username and user is None:
        user, password = parts.username, parts.password or ""
    if ca_certs and not os.path.exists(ca_certs):
        raise InputError(f"{ca_certs}: no such CA bundle file (--ca-certs)")
    if insecure and parts.scheme == "https":
        warnings.warn(f"TLS certificate verification is off for {redact_url(url)} (--insecure)")
    auth = (user, password or "") if user is not None else None
    tls = {"scheme": parts.scheme, "ca_certs": ca_certs, "insecure": insecure}
    if aws_region:
        engine = engine or OPENSEARCH.name
        if engine_named(engine) is not OPENSEARCH:
            raise InputError("--aws-region signs requests for Amazon OpenSearch Service: the engine is opensearch")
    chosen = engine_named(engine) if engine else None
    if chosen is ELASTICSEARCH:
        cluster = Cluster(_ElasticsearchClient(_elasticsearch_client(url, auth, tls, timeout)), url, opaque_id)
    else:
        backend = _OpenSearchClient(_opensearch_client(url, auth, tls, timeout, aws_region, aws_service))
        cluster = Cluster(backend, url, opaque_id)
        if chosen is None and not aws_region:
            try:
                headers = backend.probe("/_cluster/health", opaque_id)
            except Exception as error:
                failure = backend.failure(error)
                if failure is None:
                    raise
                raise cluster._error(failure, "connecting") from None
            if headers.get("x-elastic-product") == "Elasticsearch":
                backend.client.close()
                return connect(url, engine=ELASTICSEARCH.name, user=user, password=password, ca_certs=ca_certs,
                               insecure=insecure, timeout=timeout, opaque_id=opaque_id)
            return cluster
    cluster.request("GET", "/_cluster/health", action="connecting")
    return cluster


def _first_url(url: str):
    """The parts of the first of the URLs in `url`, once all were checked."""
    urls = split_urls(url)
    for one in urls or [url]:
        check = urlsplit(one)
        if check.scheme not in ("http", "https") or not check.hostname:
            raise InputError(f"{redact_url(one)}: not an http(s) URL of a cluster")
    parts = urlsplit(urls[0])
    if any(urlsplit(one).scheme != parts.scheme for one in urls):
        raise InputError(f"{redact_url(url)}: the URLs of one cluster must all be http or all https")
    return parts


def _opensearch_client(url: str, auth, tls: dict, timeout: float, aws_region, aws_service):
    from opensearchpy import OpenSearch

    # opensearch-py keeps one connection per node by default: with bulk workers and searches in
    # parallel threads every extra connection was closed after use (urllib3 "pool is full").
    options = {"timeout": timeout, "pool_maxsize": CONNECTIONS_PER_NODE}
    if aws_region:
        from opensearchpy import RequestsHttpConnection

        options.update(http_auth=_aws_auth(aws_region, aws_service), connection_class=RequestsHttpConnection)
    elif auth is not None:
        options["http_auth"] = auth
    if tls["scheme"] == "https":
        options["use_ssl"] = True
        if tls["insecure"]:
            options.update(verify_certs=False, ssl_show_warn=False, ssl_assert_hostname=False)
        else:
            options["verify_certs"] = True
            if tls["ca_certs"]:
                options["ca_certs"] = tls["ca_certs"]
    return OpenSearch(hosts=[redact_url(one) for one in split_urls(url)], **options)


def _elasticsearch_client(url: str, auth, tls: dict, timeout: float):
    from elasticsearch import Elasticsearch

    options = {"request_timeout": timeout, "connections_per_node": CONNECTIONS_PER_NODE}
    if auth is not None:
        options["basic_auth"] = auth
    if tls["scheme"] == "https":
        if tls["insecure"]:
            options.update(verify_certs=False, ssl_show_warn=False, ssl_assert_hostname=False)
        elif tls["ca_certs"]:
            options["ca_certs"] = tls["ca_certs"]
    return Elasticsearch(hosts=[redact_url(one) for one in split_urls(url)], **options)


def _aws_auth(region: str, service: str):
    from splade_os.common.extras import require

    require("aws", "AWS SigV4 signing")
    import boto3
    from opensearchpy import AWSV4SignerAuth

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ClusterError("AWS SigV4: no AWS credentials found (environment, profile or instance role)")
    return AWSV4SignerAuth(credentials, region, service)
