"""What differs between running an OpenSearch node and an Elasticsearch node: one spec per engine.

Both come as Maven Central "integ-test" zips without a bundled JDK, both refuse to run as root,
and both take the same network, path and disk settings; they differ in names (the start script,
the environment variables, the config file), in what has to be switched off (Elasticsearch's
security and machine learning), and in the name of the bootstrap setting of a new cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from splade_os.query.engine import ELASTICSEARCH, OPENSEARCH, Engine, engine_named
from splade_os.common.errors import InputError


@dataclass(frozen=True)
class Module:
    """A module the engine needs that some of its zips lack, and the Maven jar that provides it.

    OpenSearch's integ-test zips before 3.5 carry only the transport module; `rank_features`
    lives in mapper-extras, published on its own as a plain jar. The engine loads a module from
    `modules/<name>/` holding the jar and a `plugin-descriptor.properties` (unknown keys refused).
    """

    name: str
    artifact: str  # Maven coordinates with "{version}": the engine's own version
    description: str
    # The module's plugin class, by the engine's major version (it was renamed in 3.0).
    classnames: Tuple[Tuple[int, str], ...]

    def classname(self, version: str) -> str:
        major = version_key(version)[0]
        return next(name for since, name in sorted(self.classnames, reverse=True) if major >= since)


def version_key(version: str) -> Tuple[int, ...]:
    """(major, minor, patch) of "2.19.6" (missing parts are 0), to compare versions.

    Raises:
        InputError: not a version of numbers and dots.
    """
    parts = version.split(".")
    if not version or not all(part.isdigit() for part in parts):
        raise InputError(f"engine version {version!r}: expected numbers and dots, e.g. 3.5.0")
    return tuple(int(part) for part in (parts + ["0", "0"])[:3])


@dataclass(frozen=True)
class NodeEngine:
    """How to fetch, configure and recognise a local node of one engine.

    Attributes:
        engine: the `splade_os.query.engine.Engine` the node runs.
        version: the default version.
        artifact: Maven coordinates of the distribution, with "{version}" in them.
        size_mb: about how large the download is (said before it starts).
        start_script: the script under `bin/` that starts the node.
        java_home_var, conf_var, java_opts_var, home_var: the start script's environment variables
            for the JDK, the config folder, extra JVM options and the distribution home.
        config_file: the settings file in the config folder.
        settings: settings of the engine's own that every local node gets.
        initial_masters: the setting that names the master-eligible nodes of a new cluster.
        process_name: a word in the command line of the node's process (to recognise a pid).
        jvm_files_in_logs: the JVM's gc log and crash files land in `path.logs` already (the node
            runs in its logs folder); otherwise jvm.options is rewritten to put them there.
        versions: the versions the test suite runs on (the default first); others may work.
        java: (since version, lowest Java, highest Java or None) rows: what each version runs on.
        modules: modules splade-os needs, added to a zip that lacks them.
    """

    engine: Engine
    version: str
    artifact: str
    size_mb: int
    start_script: str
    java_home_var: str
    conf_var: str
    java_opts_var: str
    home_var: str
    config_file: str
    initial_masters: str
    process_name: str
    jvm_files_in_logs: bool
    settings: dict = field(default_factory=dict)
    versions: Tuple[str, ...] = ()
    java: Tuple[Tuple[str, int, Optional[int]], ...] = ()
    modules: Tuple[Module, ...] = ()

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def label(self) -> str:
        return self.engine.label

    def coordinates(self, version: str) -> str:
        """The Maven artifact of `version`."""
        return self.artifact.format(version=version)

    def home_name(self, version: str) -> str:
        """The folder the zip of `version` unpacks to, e.g. "opensearch-3.5.0"."""
        return f"{self.name}-{version}"

    def script(self, home: Path) -> Path:
        """The start script inside a distribution home."""
        return home / "bin" / self.start_script

    def java_range(self, version: str) -> Tuple[int, Optional[int]]:
        """(lowest, highest or None) Java major version that `version` runs on."""
        key = version_key(version)
        rows = [row for row in self.java if key >= version_key(row[0])]
        return max(rows, key=lambda row: version_key(row[0]))[1:] if rows else (21, None)


OPENSEARCH_NODE = NodeEngine(
    engine=OPENSEARCH,
    version="3.5.0",
    artifact="org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip",
    size_mb=190,
    start_script="opensearch",
    java_home_var="OPENSEARCH_JAVA_HOME",
    conf_var="OPENSEARCH_PATH_CONF",
    java_opts_var="OPENSEARCH_JAVA_OPTS",
    home_var="OPENSEARCH_HOME",
    config_file="opensearch.yml",
    initial_masters="cluster.initial_cluster_manager_nodes",
    process_name="opensearch",
    jvm_files_in_logs=False,
    versions=("3.5.0", "2.19.6", "3.8.0"),
    # 2.x needs the security manager that Java 24 removed; 3.x needs Java 21.
    java=(("1.0.0", 11, 23), ("2.0.0", 17, 23), ("3.0.0", 21, None)),
    modules=(Module(
        name="mapper-extras",
        artifact="org.opensearch.plugin:mapper-extras-client:{version}",
        description="Adds advanced field mappers",
        classnames=((1, "org.opensearch.index.mapper.MapperExtrasPlugin"),
                    (3, "org.opensearch.index.mapper.MapperExtrasModulePlugin")),
    ),),
)

ELASTICSEARCH_NODE = NodeEngine(
    engine=ELASTICSEARCH,
    version="8.19.21",
    artifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip",
    size_mb=107,
    start_script="elasticsearch",
    java_home_var="ES_JAVA_HOME",
    conf_var="ES_PATH_CONF",
    java_opts_var="ES_JAVA_OPTS",
    home_var="ES_HOME",
    config_file="elasticsearch.yml",
    initial_masters="cluster.initial_master_nodes",
    # The launcher JVM (whose pid we hold) names the distribution home in its command line.
    process_name="elasticsearch",
    jvm_files_in_logs=True,
    versions=("8.19.21",),
    java=(("8.0.0", 21, None),),
    settings={
        # Security on would mean TLS and passwords (and a first-start auto-configuration);
        # the machine-learning plugin is not in this zip, but its setting defaults to on.
        "xpack.security.enabled": False,
        "xpack.ml.enabled": False,
    },
)

NODE_ENGINES = {spec.name: spec for spec in (OPENSEARCH_NODE, ELASTICSEARCH_NODE)}
DEFAULT_ENGINE = OPENSEARCH_NODE.name


def node_engine(name) -> NodeEngine:
    """The `NodeEngine` for "opensearch" or "elasticsearch" (an `Engine` or `NodeEngine` works too).

    Raises:
        InputError: an unknown engine name.
    """
    if isinstance(name, NodeEngine):
        return name
    try:
        return NODE_ENGINES[engine_named(name).name]
    except KeyError:  # an Engine without a local node
        raise InputError(f"engine {name!r}: no local node; expected one of {', '.join(NODE_ENGINES)}") from None
