"""Commands for the local search node (`node start|stop|status|fetch`) and the `demo`."""

import sys

import click

from splade_os.cli.options import cluster_options, handle_errors, quiet
from splade_os.query.engine import ENGINES


@click.group()
def node():
    """Manage the local search node (fetched from Maven Central, cached): OpenSearch or Elasticsearch."""


def node_engine_option(f):
    return click.option("--engine", type=click.Choice(list(ENGINES)), default="opensearch",
                        show_default=True, help="Which engine's local node.")(f)


def node_version_option(f):
    return click.option("--version", "version", default=None, metavar="VERSION",
                        help="The engine version (default: OpenSearch 3.5.0, Elasticsearch 8.19.21; tested: "
                             "see docs/nodes.md).")(f)


@node.command("start")
@node_engine_option
@click.option("--nodes", type=click.IntRange(min=1), default=None,
              help="Nodes in the local cluster (default: 1, or reuse whatever runs).")
@node_version_option
@handle_errors
def node_start(engine, nodes, version):
    """Start the local node (or reuse the running one) and print its URL (several: comma-separated)."""
    from splade_os.node import start_background

    click.echo(start_background(engine=engine, nodes=nodes, version=version, show_progress=not quiet()))


@node.command("stop")
@node_engine_option
@handle_errors
def node_stop(engine):
    """Stop the local node (its data is kept)."""
    from splade_os.node import stop_background

    click.echo("stopped" if stop_background(engine) else f"no local {engine} node was running")


@node.command("status")
@node_engine_option
@handle_errors
def node_status(engine):
    """Print the local node's URL, or say that none is running (exit status 1)."""
    from splade_os.node import running_url

    url = running_url(engine)
    click.echo(url or f"no local {engine} node is running")
    if not url:
        sys.exit(1)


@node.command("fetch")
@node_engine_option
@node_version_option
@handle_errors
def node_fetch(engine, version):
    """Download and unpack the node's distribution into the cache (no start); print its folder."""
    from splade_os.node import ensure_distribution

    click.echo(ensure_distribution(engine, version, show_progress=not quiet()))


@click.command()
@click.option("--index", "-i", default="splade-os-sample", show_default=True, help="Index for the sample.")
@cluster_options
@handle_errors
def demo(index, cluster):
    """Ingest the bundled sample (Cranfield) with the default model and run sample searches."""
    from splade_os.cli.demo import run_demo

    for line in run_demo(cluster.connect(), index, show_progress=not quiet()):
        click.echo(line)


@node.command("image")
@node_engine_option
@click.option("--rebuild", is_flag=True, help="Build it again even if the image exists.")
@handle_errors
def node_image(engine, rebuild):
    """Build the engine's container image here (Debian base from debootstrap, the Maven Central
    distribution, the local JDK), or reuse it; print its tag."""
    from splade_os.node.image import build_image

    click.echo(build_image(engine, show_progress=not quiet(), rebuild=rebuild))
