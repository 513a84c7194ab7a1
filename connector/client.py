"""Connecting to OpenSearch: URL, credentials and TLS from options or the environment.

Secrets never appear in messages: URLs are shown without their user-info part and the
password is only handed to the client.
"""

import os
import warnings
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from .errors import ClusterError


def redact_url(url: str) -> str:
    """The URL without user name and password."""
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
        raise ClusterError(f"{path}: cannot read the credentials file ({e.strerror})") from None
    if text.startswith("{"):
        import json

        try:
            data = json.loads(text)
            return str(data["user"]), str(data["password"])
        except (ValueError, KeyError):
            raise ClusterError(f"{path}: expected JSON with \"user\" and \"password\"") from None
    user, sep, password = text.splitlines()[0].partition(":")
    if not sep:
        raise ClusterError(f"{path}: expected `user:password` on the first line")
    return user, password


def _aws_auth(region: str, service: str):
    try:
        import boto3
        from opensearchpy import AWSV4SignerAuth
    except ImportError:
        raise ClusterError("AWS SigV4 needs boto3: pip install 'splade-os[aws]'") from None
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ClusterError("AWS SigV4: no AWS credentials found (environment, profile or instance role)")
    return AWSV4SignerAuth(credentials, region, service)


def connect(
    url: str,
    user: Optional[str] = None,
    password: Optional[str] = None,
    ca_certs: Optional[str] = None,
    insecure: bool = False,
    timeout: float = 60,
    credentials_file: Optional[str] = None,
    aws_region: Optional[str] = None,
    aws_service: str = "es",
):
    """An `opensearchpy.OpenSearch` client for `url`, checked with one request.

    Args:
        url: e.g. "http://localhost:9200" or "https://search.example.com:9200".
        user, password: basic auth; default to $OPENSEARCH_USER / $OPENSEARCH_PASSWORD.
        ca_certs: CA bundle to verify the server's certificate with.
        insecure: skip TLS verification (self-signed certificates); warns.
        timeout: seconds per request.
        credentials_file: basic auth from a file (`user:password`, or JSON); default
            $OPENSEARCH_CREDENTIALS_FILE.
        aws_region, aws_service: sign requests with AWS SigV4 for managed OpenSearch ("es") or
            OpenSearch Serverless ("aoss"); needs the `aws` extra (boto3).

    Raises:
        ClusterError: unreachable, TLS failure, refused credentials, or not OpenSearch.
    """
    from opensearchpy import OpenSearch

    credentials_file = credentials_file or os.environ.get("OPENSEARCH_CREDENTIALS_FILE")
    if credentials_file and user is None:
        user, password = read_credentials(credentials_file)
    user = user if user is not None else os.environ.get("OPENSEARCH_USER")
    password = password if password is not None else os.environ.get("OPENSEARCH_PASSWORD")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClusterError(f"{redact_url(url)}: not an http(s) URL of an OpenSearch node")
    if parts.username and user is None:
        user, password = parts.username, parts.password or ""
    options = {"timeout": timeout}
    if aws_region:
        from opensearchpy import RequestsHttpConnection

        options.update(http_auth=_aws_auth(aws_region, aws_service), connection_class=RequestsHttpConnection)
    elif user is not None:
        options["http_auth"] = (user, password or "")
    if parts.scheme == "https":
        options["use_ssl"] = True
        if insecure:
            warnings.warn(f"TLS certificate verification is off for {redact_url(url)} (--insecure)")
            options.update(verify_certs=False, ssl_show_warn=False, ssl_assert_hostname=False)
        else:
            options["verify_certs"] = True
            if ca_certs:
                if not os.path.exists(ca_certs):
                    raise ClusterError(f"{ca_certs}: no such CA bundle file (--ca-certs)")
                options["ca_certs"] = ca_certs
    client = OpenSearch(hosts=[redact_url(url)], **options)
    ping(client, url)
    return client


def ping(client, url: str) -> dict:
    """One request to the cluster, turned into a `ClusterError` that says what to do when it fails."""
    from opensearchpy import exceptions as os_exc

    shown = redact_url(url)
    try:
        return client.info()
    except os_exc.SSLError as e:
        raise ClusterError(
            f"{shown}: TLS verification failed ({_reason(e)}); pass the CA bundle with --ca-certs, "
            "or --insecure for a self-signed test node"
        ) from None
    except os_exc.ConnectionTimeout:
        raise ClusterError(f"{shown}: OpenSearch did not answer in time") from None
    except os_exc.ConnectionError as e:
        raise ClusterError(
            f"{shown}: cannot reach OpenSearch ({_reason(e)}); check --url / OPENSEARCH_URL, "
            "or start a local node with `splade-os node start`"
        ) from None
    except os_exc.AuthenticationException:
        raise ClusterError(
            f"{shown}: OpenSearch refused the credentials (HTTP 401); set OPENSEARCH_USER and OPENSEARCH_PASSWORD"
        ) from None
    except os_exc.AuthorizationException:
        raise ClusterError(f"{shown}: the user may not access the cluster (HTTP 403)") from None
    except os_exc.TransportError as e:
        raise ClusterError(f"{shown}: OpenSearch answered HTTP {e.status_code} ({_reason(e)})") from None


def _reason(error) -> str:
    text = str(getattr(error, "info", None) or error)
    for marker in ("Connection refused", "Name or service not known", "certificate verify failed", "timed out"):
        if marker in text:
            return marker
    return text.splitlines()[0][:160] if text else type(error).__name__


def cluster_error(error, url: str, action: str) -> ClusterError:
    """A one-line `ClusterError` for an opensearch-py exception raised while doing `action`."""
    status = getattr(error, "status_code", None)
    reason = getattr(error, "error", None) or type(error).__name__
    info = getattr(error, "info", None)
    if isinstance(info, dict):
        cause = info.get("error", {})
        if isinstance(cause, dict):
            reason = cause.get("reason", reason)
    return ClusterError(f"{redact_url(url)}: {action} failed (HTTP {status}: {reason})")
