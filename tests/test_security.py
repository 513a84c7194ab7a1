"""Security on: the roles of docs/security.md on an Elasticsearch node with security and TLS on,
every documented privilege shown to be needed, every kind of credentials, and no secret printed
or pickled. OpenSearch's side (no security plugin on Maven Central): a bearer token and a client
certificate through a TLS proxy in front of a real node."""

import base64
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from faults import FaultProxy, self_signed_certificate
from samples import first_documents
from splade_os.cli import cli
from splade_os.cluster import Credentials, connect
from splade_os.common.errors import ClusterError, InputError


def on_the_secured_node(test):
    """Marks of a test on the secured node (it takes about 40 s to make and start): node, slow."""
    return pytest.mark.node(pytest.mark.slow(test))

ROOT = Path(__file__).resolve().parent.parent
SECURITY_DOC = ROOT / "docs" / "security.md"
SECRET_ENV = ("SPLADE_OS_USER", "SPLADE_OS_PASSWORD", "SPLADE_OS_API_KEY", "SPLADE_OS_BEARER_TOKEN",
              "SPLADE_OS_CREDENTIALS_FILE", "SPLADE_OS_URL", "SPLADE_OS_CLOUD_ID", "OPENSEARCH_USER",
              "OPENSEARCH_PASSWORD", "OPENSEARCH_URL")


def documented_roles() -> dict:
    """{role name: body} of every `POST /_security/role/NAME` block in docs/security.md."""
    text = SECURITY_DOC.read_text(encoding="utf-8")
    return {name: json.loads(body)
            for name, body in re.findall(r"```console\nPOST /_security/role/(\S+)\n(.*?)```", text, flags=re.DOTALL)}


class Secured:
    """The secured node, its superuser's `Cluster`, and a way to hand out exactly one role."""

    def __init__(self, node, security, admin):
        self.node, self.security, self.admin = node, security, admin
        self.made = 0

    def user(self, role: str, body: dict) -> dict:
        """The environment of a new user holding exactly `body` (as role `role`)."""
        self.made += 1
        name, password = f"u{self.made}-{role}", f"pw-{self.made}-{os.urandom(6).hex()}"
        self.admin.request("PUT", f"/_security/role/{role}", body)
        self.admin.request("PUT", f"/_security/user/{name}", {"password": password, "roles": [role]})
        return {"SPLADE_OS_USER": name, "SPLADE_OS_PASSWORD": password}

    def api_key(self, role: str, body: dict) -> dict:
        """The environment of a new API key holding exactly `body`."""
        self.made += 1
        key = self.admin.request("POST", "/_security/api_key", {"name": f"k{self.made}-{role}",
                                                                 "role_descriptors": {role: body}})
        return {"SPLADE_OS_API_KEY": key["encoded"]}

    def run(self, env: dict, *args, cache=None):
        """The CLI as the holder of `env`'s credentials (nothing else of ours in the environment)."""
        clean = {name: None for name in SECRET_ENV}
        clean.update(env)
        if cache is not None:  # a fresh cache: the query side is read from the cluster, not from disk
            clean["SPLADE_OS_CACHE"] = str(cache)
        return CliRunner().invoke(cli, ["-q", *args, "--url", self.node.url, "--ca-certs", self.security.ca_certs],
                                  env=clean, catch_exceptions=False)

    def forget(self, *indexes) -> None:
        for index in indexes:
            self.admin.request("DELETE", f"/{index}", params={"ignore_unavailable": "true"})


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    from splade_os.node import QUICK_START, LocalNode, NodeSecurity

    security = NodeSecurity.create(tmp_path_factory.mktemp("security"), client_roles=["splade-os-search"],
                                   show_progress=False)
    with LocalNode("elasticsearch", security=security, show_progress=False, java_options=QUICK_START) as node:
        admin = connect(node.url, user=security.user, password=security.password, ca_certs=security.ca_certs)
        for name, body in documented_roles().items():
            admin.request("PUT", f"/_security/role/{name}", body)
        yield Secured(node, security, admin)


@pytest.fixture(scope="module")
def corpus(sample_dir, tmp_path_factory):
    return first_documents(sample_dir, tmp_path_factory.mktemp("corpus"), 30)


@pytest.fixture(scope="module")
def tiny(sample_dir, tmp_path_factory):
    return first_documents(sample_dir, tmp_path_factory.mktemp("tiny"), 3)


@pytest.fixture(scope="module")
def model_dir(default_model):
    return str(default_model.root)


def test_the_doc_has_the_four_roles():
    assert set(documented_roles()) == {"splade-os-search", "splade-os-ingest", "splade-os-push", "splade-os-pull"}


@on_the_secured_node
@pytest.mark.parametrize("holder", ["user", "api_key"])
def test_every_command_runs_with_exactly_its_role(secured, holder, corpus, sample_dir, model_dir, tmp_path):
    roles = documented_roles()
    given = getattr(secured, holder)
    as_role = {name: given(name, body) for name, body in roles.items()}
    index, model = f"docs-{holder.replace('_', '-')}", f"sec-{holder.replace('_', '-')}"
    result = secured.run(as_role["splade-os-ingest"], "ingest", str(corpus), "--index", index,
                         "--checkpoint", str(tmp_path / "c.json"), "--dead-letter", str(tmp_path / "dead.jsonl"))
    assert result.exit_code == 0, result.output
    result = secured.run(as_role["splade-os-search"], "search", "boundary layer", "--index", index,
                         cache=tmp_path / "cache")
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) >= 5, result.output
    result = secured.run(as_role["splade-os-search"], "eval", "--index", index, "--beir", str(sample_dir), "--json",
                         "--results-dir", str(tmp_path / "runs"), cache=tmp_path / "cache")
    assert result.exit_code == 0 and json.loads(result.stdout)["queries"] == 225, result.output
    result = secured.run(as_role["splade-os-push"], "push", model_dir, "--name", model)
    assert result.exit_code == 0 and f"{model}@1" in result.output, result.output
    result = secured.run(as_role["splade-os-pull"], "pull", f"{model}@1", "-o", str(tmp_path / "pulled"),
                         cache=tmp_path / "cache")
    assert result.exit_code == 0 and (tmp_path / "pulled" / "modules.json").exists(), result.output
    # What one role may not do, another's holder is refused in one line.
    result = secured.run(as_role["splade-os-search"], "push", model_dir, "--name", model)
    assert result.exit_code == 1 and re.fullmatch(r"Error: .*HTTP 403: .* needs the index privilege \w+.*\n",
                                                  result.output), result.output


def _without(body: dict, where, privilege: str) -> dict:
    """A copy of role `body` without `privilege` (in the cluster list, or in index entry `where`)."""
    copy = json.loads(json.dumps(body))
    privileges = copy["cluster"] if where == "cluster" else copy["indices"][where]["privileges"]
    privileges.remove(privilege)
    return copy


def _privileges(body: dict):
    yield from (("cluster", p) for p in body["cluster"])
    for i, entry in enumerate(body["indices"]):
        yield from ((i, p) for p in entry["privileges"])


OWN_INDEXES = ("splade-query-sides", "splade-models", "splade-models-chunks")


@on_the_secured_node
def test_every_documented_privilege_is_needed(secured, tiny, model_dir, tmp_path):
    roles = documented_roles()
    admin = {"SPLADE_OS_USER": secured.security.user, "SPLADE_OS_PASSWORD": secured.security.password}
    # What the readers read, made by the superuser: an index (and its query side) and a model.
    secured.forget(*OWN_INDEXES)
    assert secured.run(admin, "ingest", str(tiny), "--index", "docs-base", "--checkpoint", str(tmp_path / "b.json"),
                       "--dead-letter", str(tmp_path / "b.dead")).exit_code == 0
    assert secured.run(admin, "push", model_dir, "--name", "base").exit_code == 0
    commands = {
        "splade-os-search": lambda n: ("search", "boundary layer", "--index", "docs-base"),
        "splade-os-pull": lambda n: ("pull", "base", "-o", str(tmp_path / f"pulled-{n}")),
        "splade-os-ingest": lambda n: ("ingest", str(tiny), "--index", f"docs-p{n}", "--checkpoint",
                                       str(tmp_path / f"p{n}.json"), "--dead-letter", str(tmp_path / f"p{n}.dead")),
        "splade-os-push": lambda n: ("push", model_dir, "--name", f"p{n}"),
    }
    checked = []
    for role in commands:  # the readers first, while what they read is there
        for where, privilege in _privileges(roles[role]):
            n = len(checked)
            if role in ("splade-os-ingest", "splade-os-push"):
                # From nothing, as a first ingest or push finds it: every privilege is used.
                secured.forget(*OWN_INDEXES)
            result = secured.run(secured.user(f"{role}-{n}", _without(roles[role], where, privilege)),
                                 *commands[role](n), cache=tmp_path / f"cache-{n}" if role == "splade-os-search" else None)
            assert result.exit_code == 1, (role, where, privilege, result.output)
            assert re.fullmatch(r"Error: [^\n]*HTTP 403: [^\n]*\n", result.output), (role, privilege, result.output)
            assert re.search(rf"\b{privilege}\b", result.output), (role, where, privilege, result.output)
            checked.append((role, where, privilege))
    assert len(checked) == sum(1 for body in roles.values() for _ in _privileges(body))


@on_the_secured_node
def test_without_reading_nodes_and_settings_it_falls_back_and_says_so_once(secured, tiny, tmp_path):
    body = documented_roles()["splade-os-ingest"]
    narrow = {**body, "cluster": ["cluster:monitor/health"]}
    result = secured.run(secured.user("narrow", narrow), "ingest", str(tiny), "--index", "docs-narrow",
                         "--checkpoint", str(tmp_path / "c.json"), "--dead-letter", str(tmp_path / "dead.jsonl"))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("may not read the nodes' ingest processors") == 1, result.stderr
    assert "checked by splade-os instead of an ingest pipeline" in result.stderr
    assert result.stderr.count("may not read the cluster settings") == 1, result.stderr
    assert "cluster privilege monitor" in result.stderr


@on_the_secured_node
def test_bearer_token_client_certificate_and_cloud_id(secured, tiny, tmp_path):
    search = documented_roles()["splade-os-search"]
    ingest = secured.user("token-ingest", documented_roles()["splade-os-ingest"])
    assert secured.run(ingest, "ingest", str(tiny), "--index", "docs-tok", "--checkpoint", str(tmp_path / "c.json"),
                       "--dead-letter", str(tmp_path / "d.jsonl")).exit_code == 0
    reader = secured.user("token", search)
    token = secured.admin.request("POST", "/_security/oauth2/token", {
        "grant_type": "password", "username": reader["SPLADE_OS_USER"], "password": reader["SPLADE_OS_PASSWORD"]})
    result = secured.run({"SPLADE_OS_BEARER_TOKEN": token["access_token"]}, "search", "boundary layer", "--index",
                         "docs-tok", cache=tmp_path / "cache")
    assert result.exit_code == 0 and result.stdout.strip(), result.output
    # The client certificate alone: the PKI realm maps it to splade-os-search.
    result = secured.run({}, "search", "boundary layer", "--index", "docs-tok", "--client-cert",
                         secured.security.client_cert, "--client-key", secured.security.client_key)
    assert result.exit_code == 0 and result.stdout.strip(), result.output
    cluster = connect(secured.node.url, ca_certs=secured.security.ca_certs, client_cert=secured.security.client_cert,
                      client_key=secured.security.client_key)
    assert cluster.request("GET", "/_security/_authenticate")["authentication_realm"]["type"] == "pki"
    # A cloud id whose host is 127.0.0.1 (uuid "127" + host "0.0.1"), the node's port: no URL.
    port = secured.node.url.rsplit(":", 1)[1]
    cloud_id = "local:" + base64.b64encode(f"0.0.1:{port}$127$kibana".encode()).decode()
    env = {name: None for name in SECRET_ENV}
    result = CliRunner().invoke(cli, ["search", "boundary layer", "--index", "docs-tok", "--cloud-id", cloud_id,
                                      "--ca-certs", secured.security.ca_certs],
                                env={**env, **reader, "SPLADE_OS_CACHE": str(tmp_path / "cache")},
                                catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout.strip(), result.output
    assert "no cluster configured" not in result.output  # the local-node notice


@on_the_secured_node
def test_wrong_credentials_are_one_line_without_the_secret(secured):
    for env, kind in (({"SPLADE_OS_API_KEY": "bm90LWEta2V5Om5vdC1hLXNlY3JldA=="}, "check the API key"),
                      ({"SPLADE_OS_USER": "nobody-here", "SPLADE_OS_PASSWORD": "hunter2-wrong"}, "check the basic auth"),
                      ({"SPLADE_OS_BEARER_TOKEN": "not-a-token-secret"}, "check the bearer token")):
        result = secured.run(env, "search", "lift", "--index", "docs-base")
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert "refused the credentials (HTTP 401" in result.output and kind in result.output, result.output
        assert not any(secret in result.output for secret in env.values() if secret != "nobody-here")
    with pytest.raises(InputError, match="not basic auth and an API key"):
        connect(secured.node.url, user="a", password="b", api_key="k", ca_certs=secured.security.ca_certs)


def _unpickle_elsewhere(data: bytes, env: dict) -> str:
    """Who a process with only `env` (no secret of ours) authenticates as, after unpickling `data`."""
    clean = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    code = ("import pickle, sys; cluster = pickle.loads(sys.stdin.buffer.read()); "
            "print(cluster.request('GET', '/_security/_authenticate')['username'])")
    done = subprocess.run([sys.executable, "-c", code], input=data, env={**clean, **env}, capture_output=True,
                          timeout=120)
    return (done.stdout or done.stderr).decode().strip().splitlines()[-1]


@on_the_secured_node
def test_a_pickled_cluster_holds_no_secret(secured, tmp_path, monkeypatch):
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    holder = secured.user("pickled", documented_roles()["splade-os-search"])
    user, password = holder["SPLADE_OS_USER"], holder["SPLADE_OS_PASSWORD"]
    ca = secured.security.ca_certs
    url = secured.node.url.replace("https://", f"https://{user}:{password}@")
    for cluster in (connect(secured.node.url, user=user, password=password, ca_certs=ca), connect(url, ca_certs=ca)):
        assert password not in repr(cluster) + repr(cluster._credentials) + repr(vars(cluster))
        data = pickle.dumps(cluster)
        assert password.encode() not in data and user.encode() not in data
        assert "HTTP 401" in _unpickle_elsewhere(data, {})  # nothing to authenticate with
        with cluster.secret_file(tmp_path / "shared") as path:
            assert path.stat().st_mode & 0o777 == 0o600
            data = pickle.dumps(cluster)
            assert password.encode() not in data and str(path).encode() in data
            assert _unpickle_elsewhere(data, {}) == user
        assert not path.exists()
    # From the environment: nothing written, the other process reads its own environment.
    key = secured.api_key("pickled-key", documented_roles()["splade-os-search"])["SPLADE_OS_API_KEY"]
    monkeypatch.setenv("SPLADE_OS_API_KEY", key)
    cluster = connect(secured.node.url, ca_certs=ca)
    with cluster.secret_file(tmp_path / "shared") as path:
        assert path is None
        data = pickle.dumps(cluster)
    assert key.encode() not in data
    assert _unpickle_elsewhere(data, {"SPLADE_OS_API_KEY": key}) == secured.admin.request(
        "GET", "/_security/_authenticate")["username"]  # an API key authenticates as its owner


def test_credentials_files_hold_any_kind(tmp_path):
    from splade_os.cluster import read_credentials

    (tmp_path / "token.json").write_text('{"bearer_token": "abc"}')
    assert read_credentials(str(tmp_path / "token.json")) == Credentials(bearer_token="abc")
    assert repr(Credentials("alice", "pa55-secret")) == "Credentials(basic auth, user='alice')"
    (tmp_path / "empty.json").write_text('{"api_key": ""}')
    with pytest.raises(InputError, match='"api_key", or "bearer_token"'):
        read_credentials(str(tmp_path / "empty.json"))


def test_opensearch_bearer_token_and_client_certificate_through_a_tls_proxy(opensearch_url, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    client = tmp_path / "client"
    client.mkdir()
    client_cert, client_key = self_signed_certificate(client)
    with FaultProxy(opensearch_url, tls=(cert, key), authorization="Bearer t0ken-secret", client_ca=client_cert) as proxy:
        cluster = connect(proxy.url, bearer_token="t0ken-secret", ca_certs=cert, client_cert=client_cert,
                          client_key=client_key)
        assert cluster.engine.name == "opensearch" and cluster.request("GET", "/_cluster/health")["status"]
        with pytest.raises(ClusterError) as refused:  # no client certificate: the handshake fails
            connect(proxy.url, bearer_token="t0ken-secret", ca_certs=cert)
        assert "t0ken-secret" not in str(refused.value)
        with pytest.raises(ClusterError, match="check the bearer token") as refused:
            connect(proxy.url, bearer_token="wrong-secret", ca_certs=cert, client_cert=client_cert,
                    client_key=client_key)
        assert "wrong-secret" not in str(refused.value)
    with pytest.raises(InputError, match="--api-key is an Elasticsearch API key"):
        connect(opensearch_url, api_key="id:key")


def test_connection_input_is_refused_in_one_line(tmp_path, monkeypatch):
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="no cluster: give its URL"):
        connect()
    with pytest.raises(InputError, match="not both"):
        connect("https://127.0.0.1:9", cloud_id="x:eXo=")
    with pytest.raises(InputError, match="--client-key needs --client-cert"):
        connect("https://127.0.0.1:9", client_key=__file__)
    with pytest.raises(InputError, match="no such client certificate"):
        connect("https://127.0.0.1:9", client_cert=str(tmp_path / "missing.pem"))
    result = CliRunner().invoke(cli, ["-q", "search", "lift", "--index", "x", "--cloud-id", "not-a-cloud-id"],
                                env={name: None for name in SECRET_ENV}, catch_exceptions=False)
    assert result.output == "Error: --cloud-id: not an Elastic Cloud id (NAME:BASE64, as the deployment's page shows it)\n"
    # A cloud id is a configured cluster: the command goes there (and fails to reach it), no local node.
    cloud_id = "c:" + base64.b64encode(b"0.0.1:9$127$kb").decode()
    result = CliRunner().invoke(cli, ["search", "lift", "--index", "x", "--cloud-id", cloud_id],
                                env={name: None for name in SECRET_ENV}, catch_exceptions=False)
    assert result.exit_code == 1 and "https://127.0.0.1:9: cannot reach the cluster" in result.output, result.output
    assert "no cluster configured" not in result.output  # the local-node notice
