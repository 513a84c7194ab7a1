"""The `splade-os` command line: one module per command group (`documents`: ingest, init,
reindex; `search`: search, query, eval; `models`: train, push, pull; `nodes`: node, demo), each
command a thin wrapper over a library call; the option sets they share are in `options`.

May import: every package.
"""

from splade_os.cli.main import cli, main  # noqa: F401
