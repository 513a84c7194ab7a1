"""Security on for a local Elasticsearch node: TLS on HTTP, a superuser, API keys, access tokens and
client certificates, for tests and for trying a role before it goes to production.

The nodes splade-os starts by itself keep security off (plain HTTP on 127.0.0.1); this one is
asked for explicitly. Everything comes from the distribution itself, nothing is downloaded and no
Python package is needed: `elasticsearch-certutil` makes a CA, the node's certificate (for
127.0.0.1 and localhost) and a client certificate (`CN=splade-os-client`), and `elasticsearch-users`
writes the superuser into the file realm. The node has a file realm (the superuser), a native
realm (users, roles and API keys made through the API), and a PKI realm that maps the client
certificate to the roles named here (mutual TLS); the PKI realm needs the self-generated trial
license, which a throw-away node gets.

The Maven zip lacks the analysis-common module, and the `.security` index (native users, roles,
API keys, tokens) maps a field with three of its analysis components (`pattern_capture`,
`uax_url_email`, `unique`): without them no role or API key can be made. A small plugin (its
source below, compiled here with the JDK's javac against the zip's own jars) supplies them from
the Lucene classes the zip ships; it runs only in the secured node's own home (links to the
distribution plus that plugin), never in the distribution itself.

Example:
    >>> security = NodeSecurity.create(folder, client_roles=["splade-os-search"])
    >>> with LocalNode("elasticsearch", security=security) as node:
    ...     admin = splade_os.connect(node.url, user=security.user, password=security.password,
    ...                               ca_certs=security.ca_certs)
"""

from __future__ import annotations

import base64
import secrets
import shutil
import ssl
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from splade_os.common.errors import NodeError
from .distribution import ensure_distribution
from .engines import ELASTICSEARCH_NODE
from .java import find_java_home
from .logs import progress, shorten

CLIENT_NAME = "splade-os-client"
CERTS = "certs"  # the folder of the node's config that holds the certificates
PLUGIN = "security-analysis-shim"
PLUGIN_SOURCE = """\
package splade.shim;

import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.miscellaneous.RemoveDuplicatesTokenFilter;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.elasticsearch.index.analysis.AbstractTokenFilterFactory;
import org.elasticsearch.index.analysis.AbstractTokenizerFactory;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

/** What the .security index's "email" analyzer needs of analysis-common (test nodes only). */
public class SecurityAnalysisShim extends Plugin implements AnalysisPlugin {
    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        return Map.of(
            "pattern_capture", (index, env, name, settings) -> {
                List<String> regexes = settings.getAsList("patterns");
                Pattern[] patterns = regexes.stream().map(Pattern::compile).toArray(Pattern[]::new);
                boolean preserve = settings.getAsBoolean("preserve_original", true);
                return new AbstractTokenFilterFactory(name, settings) {
                    public TokenStream create(TokenStream in) {
                        return new PatternCaptureGroupTokenFilter(in, preserve, patterns);
                    }
                };
            },
            "unique", (index, env, name, settings) -> new AbstractTokenFilterFactory(name, settings) {
                public TokenStream create(TokenStream in) {
                    return new RemoveDuplicatesTokenFilter(in);
                }
            });
    }

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("uax_url_email", (index, env, name, settings) -> new AbstractTokenizerFactory(index, settings, name) {
            public Tokenizer create() {
                return new UAX29URLEmailTokenizer();
            }
        });
    }
}
"""


@dataclass(frozen=True)
class NodeSecurity:
    """The certificates and the superuser of a secured local Elasticsearch node (see the module).

    Attributes:
        folder: holds `ca.crt`, the node's and the client's certificates and keys, and the file
            realm's `users` / `users_roles`.
        user, password: the superuser (file realm).
        client_roles: the roles the client certificate is mapped to (PKI realm).
    """

    folder: Path
    user: str
    password: str = field(repr=False)
    client_roles: Sequence[str] = ()

    @classmethod
    def create(cls, folder, *, user: str = "splade-admin", password: Optional[str] = None,
               client_roles: Sequence[str] = (), version: Optional[str] = None,
               show_progress: bool = True) -> "NodeSecurity":
        """Make the certificates and the superuser in `folder` (three runs of the distribution's tools).

        Raises:
            NodeError: a tool failed (with its message).
        """
        folder = Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        home = ensure_distribution(ELASTICSEARCH_NODE, version, show_progress)
        tools = _Tools(home, folder)
        progress(show_progress, f"making a CA, certificates and user {user!r} in {folder}")
        tools.run("elasticsearch-certutil", "ca", "--pem", "--silent", "--out", str(folder / "ca.zip"))
        _unzip(folder / "ca.zip", folder)
        (folder / "instances.yml").write_text(
            "instances:\n"
            "  - name: node\n    ip: [\"127.0.0.1\"]\n    dns: [\"localhost\"]\n"
            f"  - name: {CLIENT_NAME}\n")
        tools.run("elasticsearch-certutil", "cert", "--pem", "--silent", "--in", str(folder / "instances.yml"),
                  "--ca-cert", str(folder / "ca" / "ca.crt"), "--ca-key", str(folder / "ca" / "ca.key"),
                  "--out", str(folder / "certs.zip"))
        _unzip(folder / "certs.zip", folder)
        tools.compile_plugin(folder / "plugin", version or ELASTICSEARCH_NODE.version)
        password = password or secrets.token_urlsafe(18)
        tools.run("elasticsearch-users", "useradd", user, "-p", password, "-r", "superuser")
        for name in ("users", "users_roles"):
            shutil.copyfile(tools.config / name, folder / name)
        return cls(folder, user, password, tuple(client_roles))

    @property
    def ca_certs(self) -> str:
        """The CA that signed the node's certificate (for `connect(ca_certs=...)`)."""
        return str(self.folder / "ca" / "ca.crt")

    @property
    def client_cert(self) -> str:
        return str(self.folder / CLIENT_NAME / f"{CLIENT_NAME}.crt")

    @property
    def client_key(self) -> str:
        return str(self.folder / CLIENT_NAME / f"{CLIENT_NAME}.key")

    @property
    def settings(self) -> dict:
        """The node's security settings (they replace the local node's `xpack.security.enabled: false`)."""
        return {
            "xpack.security.enabled": True,
            "xpack.security.http.ssl.enabled": True,
            "xpack.security.http.ssl.certificate": f"{CERTS}/node.crt",
            "xpack.security.http.ssl.key": f"{CERTS}/node.key",
            "xpack.security.http.ssl.certificate_authorities": [f"{CERTS}/ca.crt"],
            # A client certificate is asked for, not required: the PKI realm maps it to roles.
            "xpack.security.http.ssl.client_authentication": "optional",
            "xpack.security.authc.token.enabled": True,
            "xpack.security.authc.api_key.enabled": True,
            "xpack.security.authc.realms.file.file1.order": 0,
            "xpack.security.authc.realms.native.native1.order": 1,
            "xpack.security.authc.realms.pki.pki1.order": 2,
            # The PKI realm is not in the basic license: a throw-away node runs on the self-made
            # 30-day trial (the license lives in its data folder).
            "xpack.license.self_generated.type": "trial",
        }

    def install(self, config: Path) -> None:
        """Put the certificates, the file realm's users and the PKI role mapping into a node's config folder."""
        certs = config / CERTS
        certs.mkdir(exist_ok=True)
        shutil.copyfile(self.ca_certs, certs / "ca.crt")
        for suffix in ("crt", "key"):
            shutil.copyfile(self.folder / "node" / f"node.{suffix}", certs / f"node.{suffix}")
        for name in ("users", "users_roles"):
            shutil.copyfile(self.folder / name, config / name)
        mapping = "".join(f'{role}:\n  - "CN={CLIENT_NAME}"\n' for role in self.client_roles)
        (config / "role_mapping.yml").write_text(mapping or "{}\n")

    def node_home(self, distribution: Path, target: Path) -> Path:
        """A home of the node's own at `target`: links to the distribution's folders, and a
        plugins folder holding the analysis plugin the `.security` index needs."""
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for entry in distribution.iterdir():
            if entry.name != "plugins":
                (target / entry.name).symlink_to(entry)
        shutil.copytree(self.folder / "plugin", target / "plugins" / PLUGIN)
        return target

    def health_access(self) -> dict:
        """What a health probe of the node needs: the CA's TLS context and the superuser's basic auth."""
        context = ssl.create_default_context(cafile=self.ca_certs)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"context": context, "headers": {"Authorization": f"Basic {token}"}}


class _Tools:
    """Runs the distribution's command-line tools against a config folder of their own."""

    def __init__(self, home: Path, folder: Path):
        self.home, self.java = home, find_java_home(ELASTICSEARCH_NODE)
        self.config = folder / "tool-config"
        shutil.rmtree(self.config, ignore_errors=True)
        shutil.copytree(home / "config", self.config)

    def compile_plugin(self, target: Path, version: str) -> None:
        """Compile PLUGIN_SOURCE against the distribution's jars into `target` (jar + descriptor)."""
        build = target.parent / "plugin-build"
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        source = build / "SecurityAnalysisShim.java"
        source.parent.mkdir(parents=True)
        source.write_text(PLUGIN_SOURCE)
        command = [str(self.java / "bin" / "javac"), "--release", "21", "-nowarn", "-cp", str(self.home / "lib" / "*"),
                   "-d", str(build / "classes"), str(source)]
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise NodeError(f"javac could not build the security analysis plugin: "
                            f"{shorten((result.stderr or result.stdout).strip().splitlines()[0])}")
        target.mkdir(parents=True)
        with zipfile.ZipFile(target / f"{PLUGIN}.jar", "w") as jar:
            for path in sorted((build / "classes").rglob("*.class")):
                jar.write(path, path.relative_to(build / "classes").as_posix())
        (target / "plugin-descriptor.properties").write_text(
            f"name={PLUGIN}\ndescription=analysis components of the .security index (test nodes)\nversion=1.0\n"
            f"elasticsearch.version={version}\njava.version=21\nclassname=splade.shim.SecurityAnalysisShim\n")
        shutil.rmtree(build)

    def run(self, tool: str, *args: str) -> None:
        spec = ELASTICSEARCH_NODE
        env = {"PATH": "/usr/bin:/bin", spec.java_home_var: str(self.java), spec.conf_var: str(self.config),
               spec.home_var: str(self.home)}
        try:
            result = subprocess.run([str(self.home / "bin" / tool), *args], env=env, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NodeError(f"{tool} could not run: {e}") from None
        if result.returncode != 0:
            lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
            raise NodeError(f"{tool} {args[0]} failed: {shorten(lines[-1] if lines else f'exit {result.returncode}')}")


def _unzip(archive: Path, folder: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    archive.unlink()
