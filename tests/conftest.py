"""Shared fixtures: a real OpenSearch, the default model, and the bundled sample corpus.

OpenSearch comes from, in order: $OPENSEARCH_URL; Testcontainers' OpenSearchContainer when a
Docker engine answers; else the local launcher (a node from the Maven Central distribution).
The backend in use is printed at the start of the run.
"""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from connector.model_builder import SAMPLE_DIR

OPENSEARCH_IMAGE = "opensearchproject/opensearch:3.5.0"
BACKEND = []  # which OpenSearch the run used, printed in the terminal summary

# Shared 2-core machines are slow at times: no per-example deadline, no "too slow" failures.
settings.register_profile("splade-os", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("splade-os")


def pytest_terminal_summary(terminalreporter):
    for line in BACKEND:
        terminalreporter.write_line(f"[splade-os tests] OpenSearch backend: {line}")


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def opensearch_url():
    url = os.environ.get("OPENSEARCH_URL")
    say = BACKEND.append
    if url:
        say(f"OPENSEARCH_URL={url}")
        yield url
        return
    if _docker_answers():
        from testcontainers.community.opensearch import OpenSearchContainer

        with OpenSearchContainer(OPENSEARCH_IMAGE, security_enabled=False) as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(9200)
            say(f"Testcontainers {OPENSEARCH_IMAGE}")
            yield f"http://{host}:{port}"
        return
    from connector.local_node import LocalNode

    with LocalNode(show_progress=False) as node:
        node.start()
        say(f"local node from the Maven Central distribution at {node.url}")
        yield node.url


@pytest.fixture(scope="session")
def client(opensearch_url):
    from connector.client import connect

    return connect(opensearch_url)


@pytest.fixture(scope="session")
def default_layout():
    from connector.model import resolve_model

    return resolve_model("default", show_progress=False)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR
