"""`splade-os ui`: the local inspection page (`splade_os.cluster.inspect`) on 127.0.0.1."""

from pathlib import Path

import click

from splade_os.cli.options import cluster_options, handle_errors, index_option

DEFAULT_PORT = 8765


@click.command()
@index_option()
@click.option("--beir", type=click.Path(file_okay=False, path_type=Path),
              help="BEIR folder of judged queries: relevant hits marked, each column's nDCG@10.")
@click.option("--split", default="test", show_default=True, help="qrels split with --beir.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535),
              help="Port on 127.0.0.1 to serve the page on.")
@cluster_options
@handle_errors
def ui(index, beir, split, port, cluster):
    """Serve a page on 127.0.0.1 comparing BM25, SPLADE and hybrid top-10 side by side, each hit with
    its highlighted snippet and the tokens that made its score (needs splade-os[ui]).

    Example: splade-os ui --index splade-os-sample --beir path/to/cranfield
    """
    from splade_os.cluster.inspect import make_app

    judged = None
    if beir:
        from splade_os.corpus.beir import load_beir

        queries, qrels, _ = load_beir(beir, split)
        judged = (queries, qrels)
    app = make_app(cluster.connect().index(index), judged)
    click.echo(f"splade-os ui: http://127.0.0.1:{port}/ (index {index!r}; Ctrl-C to stop)")
    app.run(host="127.0.0.1", port=port)
