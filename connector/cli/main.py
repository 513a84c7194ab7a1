"""The `splade-os` group: global options, and every command group's commands added to it.

Each command builds the library objects (a `Cluster`, a `SpladeIndex`, a `Model`), calls one
library function and prints its result; library errors become one-line `Error:` messages.
Heavy modules (torch, transformers) are imported only inside the commands that need them, so
`splade-os search` and `splade-os query` start quickly and work on the base install.
"""

import logging
import warnings

import click

from splade_os.cli import documents, models, nodes, ports, search, ui
from splade_os.cli.run import command_name, notice, run_id
from splade_os.common import progress
from splade_os.common.progress import LOG_FORMATS


def _show_warning(message, category, filename, lineno, file=None, line=None):
    notice(f"Warning: {message}", "warning")


@click.group()
@click.version_option(package_name="splade-os")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bars or notes on stderr (warnings, errors and the local-node notice stay).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="stderr lines as text, or as one JSON object per line (level, message, command, run_id; no "
                   "progress bars).")
def cli(debug, quiet, log_format):
    """splade-os: inference-free SPLADE retrieval on OpenSearch and Elasticsearch.

    Documents are encoded by the model's masked-LM and indexed into a sparse field; queries need
    only a tokenizer and the model's static weight table.
    """
    warnings.showwarning = _show_warning
    progress.log_format(log_format, command=command_name(), run_id=run_id())
    # The clients log every 404 as a warning; splade-os asks for missing things on purpose and
    # reports real failures itself, on one line.
    for name in ("opensearch", "elastic_transport", "elasticsearch"):
        logging.getLogger(name).setLevel(logging.ERROR)


for command in (documents.ingest, documents.enrich, search.search, search.query, search.calibrate, documents.init, models.train, search.eval_command,
                documents.reindex, models.push, models.pull, models.export, ports.query_side, nodes.node, nodes.demo,
                ui.ui):
    cli.add_command(command)


def main():
    cli()
