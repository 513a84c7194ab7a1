"""A fake `Cluster` for unit tests: scripted answers to `request`, every call recorded."""

from splade_os.query.engine import OPENSEARCH


class FakeCluster:
    """Answers `request(method, path, body, ...)` with `handler(method, path, body)`.

    The handler returns the answer, or raises (e.g. a `ClusterError`) to simulate a failure.
    `calls` records (method, path, body) of every request.
    """

    url = "http://localhost:9200"
    engine = OPENSEARCH
    max_clause_count = 1024
    max_content_length = 100 * 1024 * 1024

    def __init__(self, handler, **settings):
        self.handler = handler
        self.calls = []
        for name, value in settings.items():
            setattr(self, name, value)

    def request(self, method, path, body=None, params=None, action=None, ndjson=False):
        self.calls.append((method, path, body))
        return self.handler(method, path, body)

    def exists(self, path):
        return bool(self.request("HEAD", path))

    def index(self, name):
        from splade_os.cluster.index import SpladeIndex

        return SpladeIndex(self, name)


def splade_mapping(index: str, field: str = "splade") -> dict:
    """The `GET /<index>/_mapping` answer of a splade-os index."""
    return {index: {"mappings": {"_meta": {"splade_os": {"schema": 2, "field": field, "pipeline": "",
                                                         "model": {"name": "m", "hash": "h", "source": "default"}}}}}}
