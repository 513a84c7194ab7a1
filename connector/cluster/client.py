"""A search cluster: its client, its URL (shown without credentials), its engine, and one place
that turns the engine client's exceptions into splade-os errors.

Every request splade-os makes goes through `Cluster.request`, a plain REST call (method, path,
body) sent by the engine's own Python client (opensearch-py for OpenSearch, elasticsearch-py 8
for Elasticsearch), which brings connection pooling, TLS, authentication and SigV4. The same
paths and bodies serve both engines wherever the engines agree; `splade_os.query.engine` says where
they differ.

How requests authenticate is one `Credentials`: basic auth, an Elasticsearch API key or a bearer
token (at most one), from arguments, a credentials file or environment variables, plus a client
certificate for mutual TLS. Secrets never appear in messages or a repr: URLs are shown without
their user-info part, and a secret is only handed to the engine's client. A pickled `Cluster` (sent
to a Ray worker) carries none: the worker reads them from its environment or a secret file.

Example:
    >>> cluster = connect("http://localhost:9200")
    >>> cluster.engine.name, cluster.max_clause_count
    ('opensearch', 1024)
    >>> hits = cluster.index("docs").search("what is lift?")
"""

import base64
import contextlib
import functools
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional
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


@dataclass(frozen=True, repr=False)
class Credentials:
    """How requests authenticate: basic auth (`user`, `password`), an Elasticsearch API key, or a
    bearer token (an OAuth2/JWT access token or an Elasticsearch service token); at most one.

    The repr names the kind and the user, never a secret.

    Raises:
        InputError: more than one kind was given.
    """

    user: Optional[str] = None
    password: Optional[str] = None
    api_key: Optional[str] = None
    bearer_token: Optional[str] = None

    def __post_init__(self):
        kinds = [kind for kind, given in (("basic auth", self.user is not None), ("an API key", self.api_key),
                                          ("a bearer token", self.bearer_token)) if given]
        if len(kinds) > 1:
            raise InputError(f"credentials: give one of basic auth, an API key or a bearer token, not "
                             f"{' and '.join(kinds)}")

    @property
    def kind(self) -> Optional[str]:
        """"basic auth", "API key", "bearer token", or None (no credentials)."""
        if self.user is not None:
            return "basic auth"
        return "API key" if self.api_key else "bearer token" if self.bearer_token else None

    def __bool__(self) -> bool:
        return self.kind is not None

    def __repr__(self) -> str:
        user = f", user={self.user!r}" if self.user is not None else ""
        return f"Credentials({self.kind or 'none'}{user})"

    def as_json(self) -> dict:
        """The secret file's content (the credentials file's JSON form)."""
        if self.user is not None:
            return {"user": self.user, "password": self.password or ""}
        return {"api_key": self.api_key} if self.api_key else {"bearer_token": self.bearer_token} if self.bearer_token \
            else {}


def read_credentials(path: str) -> Credentials:
    """`Credentials` from a file: `user:password` on its first line, or JSON: {"user", "password"},
    {"api_key"} or {"bearer_token"}."""
    try:
        text = open(path, encoding="utf-8").read().strip()
    except OSError as e:
        raise InputError(f"{path}: cannot read the credentials file ({e.strerror})") from None
    if text.startswith("{"):
        expected = f'{path}: expected JSON with "user" and "password", or "api_key", or "bearer_token"'
        try:
            data = json.loads(text)
        except ValueError:
            raise InputError(expected) from None
        if not isinstance(data, dict):
            raise InputError(expected)
        if "user" in data and "password" in data:
            return Credentials(user=str(data["user"]), password=str(data["password"]))
        if data.get("api_key") or data.get("bearer_token"):
            return Credentials(api_key=data.get("api_key") or None, bearer_token=data.get("bearer_token") or None)
        raise InputError(expected)
    user, sep, password = text.splitlines()[0].partition(":") if text else ("", "", "")
    if not sep:
        raise InputError(f"{path}: expected `user:password` on the first line")
    return Credentials(user=user, password=password)


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

    # Set by `_connect`: the credentials and where they came from ("arguments", "url", "file",
    # "environment"), the arguments a worker connects again with (no secret among them), and the
    # secret file a pickled copy names while `secret_file` is open.
    _credentials: "Credentials" = None
    _credentials_source: Optional[str] = None
    _connect_arguments: Optional[dict] = None
    _secret_file: Optional[str] = None

    def __reduce__(self):
        # Another process (a Ray worker) gets its own client: it connects again with the same
        # arguments; an engine client itself cannot be pickled. No secret is pickled: the worker
        # reads credentials from its environment, or from the credentials file (or the secret file
        # `secret_file` writes) whose path is all that travels.
        arguments = self._connect_arguments
        if arguments is None:
            raise TypeError(f"{self!r} was not made by splade_os.cluster.connect, so it cannot be sent to "
                            "another process")
        if self._secret_file:
            arguments = {**arguments, "credentials_file": self._secret_file}
        return _reconnect, (arguments,)

    @contextlib.contextmanager
    def secret_file(self, folder) -> Iterator[Optional[Path]]:
        """While open, a pickled copy of this cluster reads its credentials from a file in `folder`.

        Credentials given as arguments or in the URL exist only in this process; a worker that
        connects again (a Ray actor) reads them from this file (mode 0600, removed on exit), which
        must be readable at the same path where the worker runs. Credentials from a credentials
        file or from environment variables are read there the same way, so no file is written.

        Yields:
            the file's path, or None when none was needed.
        """
        if not self._credentials or self._credentials_source not in ("arguments", "url"):
            yield None
            return
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"credentials-{os.getpid()}-{id(self):x}.json"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as f:
            json.dump(self._credentials.as_json(), f)
        self._secret_file = str(path)
        try:
            yield path
        finally:
            self._secret_file = None
            path.unlink(missing_ok=True)

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

    def _error(self, failure: _Failure, action: str, engine_known: bool = True) -> ClusterError:
        url, label = self.url, self.engine.label if engine_known else "the cluster"
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
            return ClusterError(f"{url}: {label} refused the credentials (HTTP 401; {self._credentials_hint()})",
                                status=401)
        if status == 403:
            return ClusterError(f"{url}: {action}: the user is not allowed to (HTTP 403: "
                                f"{_privilege_reason(failure.reason)})", status=403, error_type=failure.error_type)
        return ClusterError(f"{url}: {action} failed (HTTP {status}: {failure.reason or failure.error_type})",
                            status=status, error_type=failure.error_type, transient=status in TRANSIENT_STATUSES)

    def refused(self, status: int, reason: str, action: str, error_type: Optional[str] = None) -> ClusterError:
        """The one-line error of an HTTP error answered inside a response (a bulk item's 401 or 403)."""
        return self._error(_Failure("http", status, error_type, reason), action)

    def _credentials_hint(self) -> str:
        kind = self._credentials.kind if self._credentials else None
        if kind is None:
            return ("none were given: set SPLADE_OS_USER and SPLADE_OS_PASSWORD, SPLADE_OS_API_KEY or "
                    "SPLADE_OS_BEARER_TOKEN, or --credentials-file")
        where = {"basic auth": "SPLADE_OS_USER and SPLADE_OS_PASSWORD, or --credentials-file",
                 "API key": "--api-key / SPLADE_OS_API_KEY", "bearer token": "--bearer-token / SPLADE_OS_BEARER_TOKEN"}
        return f"check the {kind}: {where[kind]}"

    def exists(self, path: str) -> bool:
        """Whether a HEAD of `path` (an index, an alias `/_alias/NAME`, a document) finds it."""
        try:
            return bool(self.request("HEAD", path, action=f"checking {path}"))
        except ClusterError as e:
            if e.status != 403:
                raise
        # A refused HEAD has no body to say which privilege is missing; the same GET's answer does.
        try:
            self.request("GET", path, params={"filter_path": "_none"}, action=f"checking {path}")
        except ClusterError as e:
            if e.status == 404:
                return False
            raise
        return True

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
                warnings.warn(f"{self.url}: may not read the cluster settings ({_short_403(e)}); assuming the "
                              "engine's defaults (1024 query clauses, 100mb requests)")
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
                if self.engine is OPENSEARCH:
                    return True
                warnings.warn(f"{self.url}: may not read the nodes' ingest processors ({_short_403(e)}); "
                              "documents are checked by splade-os instead of an ingest pipeline")
                return False
            raise
        for node in answer.get("nodes", {}).values():
            processors = {p.get("type") for p in node.get("ingest", {}).get("processors", [])}
            modules = {m.get("name") for m in node.get("modules", [])}
            if not ({"fail", "set", "remove"} <= processors and "lang-painless" in modules):
                return False
        return bool(answer.get("nodes"))


_PRIVILEGE = re.compile(r"action \[(?P<action>.+?)\] is unauthorized for (?:user|API key id) \[[^\]]*\]"
                        r"(?:.*? on indices \[(?P<indices>[^\]]*)\])?.*?this action is granted by the "
                        r"(?P<scope>index|cluster) privileges \[(?P<privileges>[^\]]+)\]")


def _short_403(error: ClusterError) -> str:
    """"HTTP 403: <what needs which privilege>" from a refused request's one-line error."""
    return "HTTP 403: " + str(error).split("(HTTP 403: ", 1)[-1].rstrip(")") if error.status == 403 else "HTTP 401"


def _privilege_reason(reason: str) -> str:
    """Elasticsearch's long 403 reason as the privilege it names: which action, on which indexes,
    needs which privilege (the first is the narrowest; the others include it)."""
    found = _PRIVILEGE.search(reason or "")
    if not found:
        return reason
    first, *wider = found["privileges"].split(",")
    on = f" on {found['indices']}" if found["indices"] else ""
    also = f" (or {', '.join(wider)})" if wider else ""
    return f"{found['action']}{on} needs the {found['scope']} privilege {first}{also}"


def _reconnect(arguments: dict) -> "Cluster":
    return connect(**arguments)


CONNECTIONS_PER_NODE = 16  # kept open per node: above the bulk workers plus a few searching threads


def connect(
    url: Optional[str] = None,
    *,
    engine: Optional[str] = None,
    user: Optional[str] = None,
    password: Optional[str] = None,
    api_key: Optional[str] = None,
    bearer_token: Optional[str] = None,
    ca_certs: Optional[str] = None,
    insecure: bool = False,
    client_cert: Optional[str] = None,
    client_key: Optional[str] = None,
    cloud_id: Optional[str] = None,
    timeout: float = 60,
    credentials_file: Optional[str] = None,
    aws_region: Optional[str] = None,
    aws_service: str = "es",
    opaque_id: Optional[str] = None,
) -> Cluster:
    """A `Cluster` for `url` (or an Elastic Cloud id), checked with one request; the engine is
    detected unless given.

    Credentials are one of basic auth, an API key or a bearer token, taken from the first of: the
    arguments; the credentials file; the environment ($SPLADE_OS_USER / $SPLADE_OS_PASSWORD,
    $SPLADE_OS_API_KEY, $SPLADE_OS_BEARER_TOKEN); the URL's user info. A client certificate
    (mutual TLS) goes with any of them.

    Args:
        url: e.g. "http://localhost:9200" or "https://user:pw@search.example.com:9200"; several
            nodes of one cluster as comma-separated URLs ("http://127.0.0.1:9200,http://127.0.0.1:9201"):
            requests are spread over them and a node that does not answer is skipped. Credentials
            come from the first URL.
        engine: "opensearch" or "elasticsearch"; detected from the cluster's answer when None
            (Elasticsearch marks every answer with an `X-Elastic-Product` header).
        user, password: basic auth (the password defaults to $SPLADE_OS_PASSWORD); the older
            $OPENSEARCH_USER / $OPENSEARCH_PASSWORD are read too.
        api_key: an Elasticsearch API key: the `encoded` value `POST /_security/api_key` returns,
            or "ID:KEY".
        bearer_token: sent as `Authorization: Bearer ...`: an Elasticsearch access or service
            token, or a JWT for OpenSearch's security plugin.
        ca_certs: CA bundle to verify the server's certificate with.
        insecure: skip TLS verification (self-signed certificates); warns.
        client_cert, client_key: PEM files of a client certificate and its (unencrypted) key, for
            mutual TLS; default $SPLADE_OS_CLIENT_CERT / $SPLADE_OS_CLIENT_KEY.
        cloud_id: an Elastic Cloud deployment's id instead of a URL; default $SPLADE_OS_CLOUD_ID
            when no URL is given.
        timeout: seconds per request.
        credentials_file: credentials from a file (`user:password`, or JSON {"user", "password"},
            {"api_key"} or {"bearer_token"}); default $SPLADE_OS_CREDENTIALS_FILE.
        aws_region, aws_service: sign requests with AWS SigV4 for Amazon OpenSearch Service ("es")
            or OpenSearch Serverless ("aoss"); needs the `aws` extra (boto3).
        opaque_id: the X-Opaque-Id header of every request (e.g. "my-app/reindex-42"), to find
            them in the engines' tasks API and slow logs; `Cluster.with_opaque_id` changes it.

    Raises:
        ClusterError: unreachable, TLS failure, refused credentials, or not the engine given.
        InputError: a malformed URL, cloud id or credentials file; two kinds of credentials; a
            missing certificate file.
    """
    cloud_id = cloud_id or (None if url else _env("SPLADE_OS_CLOUD_ID"))
    if cloud_id and url:
        raise InputError("give the cluster's URL or its cloud id, not both")
    if not url and not cloud_id:
        raise InputError("no cluster: give its URL (--url, SPLADE_OS_URL) or an Elastic Cloud id "
                         "(--cloud-id, SPLADE_OS_CLOUD_ID)")
    if cloud_id:
        if engine and engine_named(engine) is not ELASTICSEARCH:
            raise InputError("--cloud-id names an Elastic Cloud deployment: the engine is elasticsearch")
        engine, url = ELASTICSEARCH.name, _cloud_url(cloud_id)
    parts = _first_url(url)
    credentials, source = _credentials(parts, user, password, api_key, bearer_token, credentials_file)
    client_cert = client_cert or _env("SPLADE_OS_CLIENT_CERT")
    client_key = client_key or _env("SPLADE_OS_CLIENT_KEY")
    for path, option in ((ca_certs, "CA bundle file (--ca-certs)"), (client_cert, "client certificate (--client-cert)"),
                         (client_key, "client key (--client-key)")):
        if path and not os.path.exists(path):
            raise InputError(f"{path}: no such {option}")
    if client_key and not client_cert:
        raise InputError("--client-key needs --client-cert (the certificate the key belongs to)")
    if client_cert and parts.scheme != "https":
        raise InputError(f"{redact_url(url)}: a client certificate needs an https URL")
    if insecure and parts.scheme == "https":
        warnings.warn(f"TLS certificate verification is off for {redact_url(url)} (--insecure)")
    tls = {"scheme": parts.scheme, "ca_certs": ca_certs, "insecure": insecure, "client_cert": client_cert,
           "client_key": client_key}
    if aws_region:
        engine = engine or OPENSEARCH.name
        if engine_named(engine) is not OPENSEARCH:
            raise InputError("--aws-region signs requests for Amazon OpenSearch Service: the engine is opensearch")
        if credentials:
            raise InputError(f"--aws-region signs requests with AWS credentials: leave out {credentials.kind}")
    cluster, answered = _cluster(url, cloud_id, engine_named(engine) if engine else None, credentials, tls, timeout,
                                 aws_region, aws_service, opaque_id)
    cluster._credentials, cluster._credentials_source = credentials, source
    if cluster.engine is OPENSEARCH and credentials.api_key:
        raise InputError("--api-key is an Elasticsearch API key; OpenSearch takes basic auth, --bearer-token, a client "
                         "certificate or --aws-region")
    if not answered:
        cluster.request("GET", "/_cluster/health", action="connecting")
    # What a worker connects again with (see Cluster.__reduce__): no secret, and the engine known.
    cluster._connect_arguments = dict(
        url=None if cloud_id else redact_url(url), cloud_id=cloud_id, engine=cluster.engine.name, ca_certs=ca_certs,
        insecure=insecure, client_cert=client_cert, client_key=client_key, timeout=timeout,
        credentials_file=_credentials_path(credentials_file) if source == "file" else None, aws_region=aws_region,
        aws_service=aws_service, opaque_id=opaque_id)
    return cluster


def _credentials(parts, user, password, api_key, bearer_token, credentials_file):
    """(`Credentials`, where they came from): the arguments, a credentials file, the environment,
    or the URL's user info, the first that has any."""
    if password is not None and user is None:  # a password argument for the user named elsewhere
        user = _env("SPLADE_OS_USER", "OPENSEARCH_USER") or parts.username
    if user is not None or api_key or bearer_token:
        if user is not None and password is None:
            password = _env("SPLADE_OS_PASSWORD", "OPENSEARCH_PASSWORD") or ""
        return Credentials(user, password, api_key or None, bearer_token or None), "arguments"
    path = _credentials_path(credentials_file)
    if path:
        return read_credentials(path), "file"
    user = _env("SPLADE_OS_USER", "OPENSEARCH_USER")
    found = Credentials(user, _env("SPLADE_OS_PASSWORD", "OPENSEARCH_PASSWORD") or "" if user is not None else None,
                        _env("SPLADE_OS_API_KEY"), _env("SPLADE_OS_BEARER_TOKEN"))
    if found:
        return found, "environment"
    if parts.username:
        return Credentials(parts.username, parts.password or ""), "url"
    return Credentials(), None


def _credentials_path(given: Optional[str]) -> Optional[str]:
    return given or _env("SPLADE_OS_CREDENTIALS_FILE", "OPENSEARCH_CREDENTIALS_FILE")


def _cloud_url(cloud_id: str) -> str:
    """The https URL of an Elastic Cloud deployment's Elasticsearch, from its cloud id."""
    from elastic_transport.client_utils import parse_cloud_id

    try:
        host, port = parse_cloud_id(cloud_id).es_address
    except (ValueError, TypeError):
        raise InputError("--cloud-id: not an Elastic Cloud id (NAME:BASE64, as the deployment's page shows it)") \
            from None
    return f"https://{host}:{port}"


def _cluster(url, cloud_id, chosen, credentials, tls, timeout, aws_region, aws_service, opaque_id=None):
    """(the Cluster on the engine's own client, whether it has answered already): the engine given,
    else the one that answers."""
    if chosen is ELASTICSEARCH:
        client = _elasticsearch_client(url, cloud_id, credentials, tls, timeout)
        return Cluster(_ElasticsearchClient(client), url, opaque_id), False
    backend = _OpenSearchClient(_opensearch_client(url, credentials, tls, timeout, aws_region, aws_service))
    cluster = Cluster(backend, url, opaque_id)
    cluster._credentials = credentials
    if chosen is None and not aws_region:
        try:
            headers = backend.probe("/_cluster/health", opaque_id)
        except Exception as error:
            failure = backend.failure(error)
            if failure is None:
                raise
            raise cluster._error(failure, "connecting", engine_known=False) from None
        if headers.get("x-elastic-product") == "Elasticsearch":
            backend.client.close()
            return _cluster(url, cloud_id, ELASTICSEARCH, credentials, tls, timeout, aws_region, aws_service, opaque_id)
        return cluster, True
    return cluster, False


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


def _encoded_api_key(api_key: str) -> str:
    """An API key as Elasticsearch's `Authorization: ApiKey` header takes it (base64 of ID:KEY)."""
    if ":" in api_key:
        return base64.b64encode(api_key.encode("utf-8")).decode("ascii")
    return api_key


def _opensearch_client(url: str, credentials: Credentials, tls: dict, timeout: float, aws_region, aws_service):
    from opensearchpy import OpenSearch

    # opensearch-py keeps one connection per node by default: with bulk workers and searches in
    # parallel threads every extra connection was closed after use (urllib3 "pool is full").
    options = {"timeout": timeout, "pool_maxsize": CONNECTIONS_PER_NODE}
    if aws_region:
        from opensearchpy import RequestsHttpConnection

        options.update(http_auth=_aws_auth(aws_region, aws_service), connection_class=RequestsHttpConnection)
    elif credentials.user is not None:
        options["http_auth"] = (credentials.user, credentials.password or "")
    elif credentials.bearer_token:
        options["headers"] = {"authorization": f"Bearer {credentials.bearer_token}"}
    elif credentials.api_key:  # only for the first answer, which tells an Elasticsearch cluster
        options["headers"] = {"authorization": f"ApiKey {_encoded_api_key(credentials.api_key)}"}
    if tls["scheme"] == "https":
        options["use_ssl"] = True
        if tls["insecure"]:
            options.update(verify_certs=False, ssl_show_warn=False, ssl_assert_hostname=False)
        else:
            options["verify_certs"] = True
            if tls["ca_certs"]:
                options["ca_certs"] = tls["ca_certs"]
        if tls["client_cert"]:
            options.update(client_cert=tls["client_cert"], client_key=tls["client_key"])
    return OpenSearch(hosts=[redact_url(one) for one in split_urls(url)], **options)


def _elasticsearch_client(url: str, cloud_id: Optional[str], credentials: Credentials, tls: dict, timeout: float):
    from elasticsearch import Elasticsearch

    options = {"request_timeout": timeout, "connections_per_node": CONNECTIONS_PER_NODE}
    if credentials.user is not None:
        options["basic_auth"] = (credentials.user, credentials.password or "")
    elif credentials.api_key:
        options["api_key"] = _encoded_api_key(credentials.api_key)
    elif credentials.bearer_token:
        options["bearer_auth"] = credentials.bearer_token
    if tls["scheme"] == "https":
        if tls["insecure"]:
            options.update(verify_certs=False, ssl_show_warn=False, ssl_assert_hostname=False)
        elif tls["ca_certs"]:
            options["ca_certs"] = tls["ca_certs"]
        if tls["client_cert"]:
            options.update(client_cert=tls["client_cert"], client_key=tls["client_key"])
    if cloud_id:
        return Elasticsearch(cloud_id=cloud_id, **options)
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
