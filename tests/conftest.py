"""Shared fixtures: a real search cluster, the default model, and the bundled sample corpus.

OpenSearch comes from, in order: $OPENSEARCH_URL; Testcontainers' OpenSearchContainer when a
Docker engine answers (on the image `splade_os.node.image` builds here from the Maven Central
distribution, built when missing; $SPLADE_OS_OPENSEARCH_IMAGE names another); else the local
launcher (a node from the Maven Central distribution). Elasticsearch likewise: $ELASTICSEARCH_URL;
Testcontainers' ElasticSearchContainer (security off); else a local Elasticsearch node.
$SPLADE_OS_TEST_BACKEND=docker or maven chooses instead of the Docker check. The backends in use
are printed at the end of the run. $SPLADE_OS_TEST_OPENSEARCH_VERSION (or _ELASTICSEARCH_) runs
the local node of another engine version (the version matrix: CI runs the tests marked `smoke`
on each version of `NodeEngine.versions` besides the default).

Markers: a test that uses a cluster fixture is marked `node` automatically; tests that encode
much, train or install are marked `slow` in their modules. The fast loop is
`pytest -m "not node and not slow"`.
"""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from splade_os.models.builder import SAMPLE_DIR

# Testcontainers' reaper image cannot be pulled here: the fixtures stop their containers
# themselves; and test traffic goes to 127.0.0.1 only (ports are published there).
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
# The machine itself may look like a container (/.dockerenv), where Testcontainers would connect
# to the bridge gateway instead: the engine is this machine's, reached on its published ports.
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
BACKEND = []  # which cluster the run used, printed in the terminal summary
NODE_FIXTURES = {"opensearch_url", "elasticsearch_url", "engine_url", "cluster", "opensearch_cluster"}
ENGINES = ("opensearch", "elasticsearch")

# Shared 2-core machines are slow at times: no per-example deadline, no "too slow" failures.
settings.register_profile("splade-os", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("splade-os")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if NODE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.node)
    # GPU tests run where a CUDA device is (scripts/gpu_check.sh), Docker tests where a Docker
    # engine answers, browser tests where Debian's Chromium and its driver are installed;
    # elsewhere they are deselected, said once.
    for marker, present, missing in (("gpu", _cuda, "no CUDA device here"),
                                     ("docker", _docker, "no Docker engine answers"),
                                     ("browser", _chromium, f"no {' or '.join(CHROMIUM)} (apt-get install chromium "
                                                            "chromium-driver)")):
        marked = [item for item in items if item.get_closest_marker(marker)]
        if marked and not present():
            config.hook.pytest_deselected(items=marked)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]
            BACKEND.append(f"{len(marked)} {marker} test(s) deselected: {missing}")


CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")  # Debian's packages chromium, chromium-driver


def _chromium() -> bool:
    return all(os.access(path, os.X_OK) for path in CHROMIUM)


def _docker() -> bool:
    from splade_os.node.image import docker_answers

    return docker_answers()


def pytest_terminal_summary(terminalreporter):
    for line in BACKEND:
        terminalreporter.write_line(f"[splade-os tests] cluster backend: {line}")


def _backend() -> str:
    """"docker" or "maven": $SPLADE_OS_TEST_BACKEND, else docker where a Docker engine answers."""
    from splade_os.node.image import docker_answers

    chosen = os.environ.get("SPLADE_OS_TEST_BACKEND", "")
    if chosen not in ("", "docker", "maven"):
        raise pytest.UsageError(f"SPLADE_OS_TEST_BACKEND={chosen!r}: expected docker or maven")
    return chosen or ("docker" if docker_answers() else "maven")


def on_loopback(container, port: int = 9200):
    """Publish the container's port on 127.0.0.1 only (a free port, as Testcontainers picks it):
    `with_bind_ports` takes no host address, docker's run does ((address,) tuples)."""
    container.ports[str(port)] = ("127.0.0.1",)
    return container


def opensearch_container(image: str):
    """Testcontainers' OpenSearchContainer on `image`, its port published on 127.0.0.1 only."""
    from testcontainers.community.opensearch import OpenSearchContainer

    container = OpenSearchContainer(image, security_enabled=False)
    container.with_env("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m")
    return on_loopback(container)


def elasticsearch_container(image: str):
    """Testcontainers' ElasticSearchContainer on `image` (it turns security off for 8.x), on 127.0.0.1 only."""
    from testcontainers.community.elasticsearch import ElasticSearchContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    # Ready when the cluster answers: the Maven distribution's `GET /` says 405 (no root handler).
    container = ElasticSearchContainer(image, mem_limit="2G").waiting_for(HttpWaitStrategy(9200, "/_cluster/health"))
    for key, value in (("discovery.type", "single-node"), ("xpack.ml.enabled", "false"),
                       ("ES_JAVA_OPTS", "-Xms512m -Xmx512m")):
        container.with_env(key, value)
    return on_loopback(container)


CONTAINERS = {"opensearch": opensearch_container, "elasticsearch": elasticsearch_container}


def _image(engine: str):
    """$SPLADE_OS_<ENGINE>_IMAGE, else the local image (built when missing). When it cannot be
    built, None (a local node serves instead, said in the summary) unless docker was asked for."""
    from splade_os.common.errors import NodeError
    from splade_os.node.image import build_image

    try:
        return os.environ.get(f"SPLADE_OS_{engine.upper()}_IMAGE") or build_image(engine, show_progress=False)
    except NodeError as e:
        if os.environ.get("SPLADE_OS_TEST_BACKEND") == "docker":
            raise
        BACKEND.append(f"no {engine} image for Testcontainers ({e})")
        return None


def _cluster_url(engine: str, env_var: str):
    """Yield one engine's URL: from env_var, else a Testcontainers container (where a Docker engine
    answers, on the local image, built when missing), else a local node from Maven Central."""
    from splade_os.query.engine import engine_named

    url = os.environ.get(env_var)
    if url:
        BACKEND.append(f"{env_var}={url}")
        yield url
        return
    version = os.environ.get(f"SPLADE_OS_TEST_{engine.upper()}_VERSION") or None
    if version and _backend() == "docker":
        raise pytest.UsageError(f"SPLADE_OS_TEST_{engine.upper()}_VERSION={version}: another version runs on "
                                "the local node (SPLADE_OS_TEST_BACKEND=maven); the images hold the default")
    image = _image(engine) if _backend() == "docker" else None
    if image:
        with CONTAINERS[engine](image) as container:
            BACKEND.append(f"Testcontainers {image}")
            yield f"http://{container.get_container_host_ip()}:{container.get_exposed_port(9200)}"
        return
    from splade_os.node import LocalNode

    with LocalNode(engine, version=version, show_progress=False) as node:
        BACKEND.append(f"local {engine_named(engine).label} {node.version} node from the Maven Central "
                       f"distribution at {node.url}")
        yield node.url


@pytest.fixture(scope="session")
def opensearch_url():
    yield from _cluster_url("opensearch", "OPENSEARCH_URL")


@pytest.fixture(scope="session")
def elasticsearch_url():
    yield from _cluster_url("elasticsearch", "ELASTICSEARCH_URL")


@pytest.fixture(scope="session", params=ENGINES)
def engine_url(request):
    """The URL of each engine's cluster in turn: tests that take it run on both engines."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
def cluster(engine_url):
    """A `Cluster` of each engine in turn (OpenSearch, then Elasticsearch)."""
    from splade_os.cluster import connect

    return connect(engine_url)


@pytest.fixture(scope="session")
def opensearch_cluster(opensearch_url):
    """The OpenSearch `Cluster`, for what only OpenSearch has (its ingest pipeline on these nodes)."""
    from splade_os.cluster import connect

    return connect(opensearch_url)


@pytest.fixture(scope="session")
def default_model():
    from splade_os.models.resolve import resolve_model

    return resolve_model("default", show_progress=False)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR
