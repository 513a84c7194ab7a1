"""Shared fixtures: a real search cluster, the default model, and the bundled sample corpus.

OpenSearch comes from, in order: $OPENSEARCH_URL; Testcontainers' OpenSearchContainer when a
Docker engine answers; else the local launcher (a node from the Maven Central distribution).
Elasticsearch likewise: $ELASTICSEARCH_URL; Testcontainers' ElasticSearchContainer (security
off); else a local Elasticsearch node. The backends in use are printed at the end of the run.

Markers: a test that uses a cluster fixture is marked `node` automatically; tests that encode
much, train or install are marked `slow` in their modules. The fast loop is
`pytest -m "not node and not slow"`.
"""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from splade_os.models.builder import SAMPLE_DIR

OPENSEARCH_IMAGE = "opensearchproject/opensearch:3.5.0"
ELASTICSEARCH_IMAGE = "elasticsearch:8.19.21"
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
    # GPU tests run where a CUDA device is (scripts/gpu_check.sh); elsewhere they are deselected, said once.
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu and not _cuda():
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]
        BACKEND.append(f"{len(gpu)} gpu test(s) deselected: no CUDA device here")


def pytest_terminal_summary(terminalreporter):
    for line in BACKEND:
        terminalreporter.write_line(f"[splade-os tests] cluster backend: {line}")


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _opensearch_container():
    from testcontainers.community.opensearch import OpenSearchContainer

    return OpenSearchContainer(OPENSEARCH_IMAGE, security_enabled=False), 9200


def _elasticsearch_container():
    from testcontainers.community.elasticsearch import ElasticSearchContainer

    container = ElasticSearchContainer(ELASTICSEARCH_IMAGE, mem_limit="2G")
    # The container itself turns security off for 8.x; these keep it small and alone.
    for key, value in (("discovery.type", "single-node"), ("xpack.ml.enabled", "false"),
                       ("ES_JAVA_OPTS", "-Xms512m -Xmx512m")):
        container.with_env(key, value)
    return container, container.port


def _cluster_url(engine: str, env_var: str, image: str, container_factory):
    """Yield one engine's URL: from env_var, else a Testcontainers container, else a local node."""
    from splade_os.query.engine import engine_named

    url = os.environ.get(env_var)
    if url:
        BACKEND.append(f"{env_var}={url}")
        yield url
        return
    if _docker_answers():
        container, port = container_factory()
        with container:
            BACKEND.append(f"Testcontainers {image}")
            yield f"http://{container.get_container_host_ip()}:{container.get_exposed_port(port)}"
        return
    from splade_os.node import LocalNode

    with LocalNode(engine, show_progress=False) as node:
        BACKEND.append(f"local {engine_named(engine).label} node from the Maven Central distribution "
                       f"at {node.url}")
        yield node.url


@pytest.fixture(scope="session")
def opensearch_url():
    yield from _cluster_url("opensearch", "OPENSEARCH_URL", OPENSEARCH_IMAGE, _opensearch_container)


@pytest.fixture(scope="session")
def elasticsearch_url():
    yield from _cluster_url("elasticsearch", "ELASTICSEARCH_URL", ELASTICSEARCH_IMAGE, _elasticsearch_container)


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
