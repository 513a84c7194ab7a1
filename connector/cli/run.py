"""This run of a command: its id, its lines on stderr (text or JSON), its JSON summary, and the
cluster it works on when none was named (the local node, said even under -q).

The run id is in every request's X-Opaque-Id (`splade-os/<command>/<run id>`), in the JSON log
lines and in the `--json` summaries, so one run can be followed from the tool to the engine's
tasks API and slow logs.
"""

import json
import os
import sys
import uuid

import click


class NoClusterError(click.ClickException):
    """No cluster is configured and SPLADE_OS_NO_LOCAL=1 forbids the local node (exit status 2)."""

    exit_code = 2


def fail(error: click.ClickException):
    """Under --log-format json, an error is one JSON line too; else click prints `Error: ...`."""
    from splade_os.common.progress import log_line, structured

    if not structured():
        raise error
    log_line("error", error.format_message())
    sys.exit(error.exit_code)


def quiet() -> bool:
    """Whether -q was given (no progress bars or notes)."""
    return click.get_current_context().find_root().params.get("quiet", False)


def notice(message: str, level: str = "info") -> None:
    """A line for the user on stderr, even under -q (text, or JSON with --log-format json)."""
    from splade_os.common.progress import log_line

    log_line(level, message)


def run_id() -> str:
    """This run's id: $SPLADE_OS_RUN_ID, else a new random one (in X-Opaque-Id, JSON logs and summaries)."""
    root = click.get_current_context().find_root()
    root.meta.setdefault("splade_os.run_id", os.environ.get("SPLADE_OS_RUN_ID") or uuid.uuid4().hex[:12])
    return root.meta["splade_os.run_id"]


def command_name() -> str:
    """The command being run (the first word after `splade-os`, e.g. "ingest", "node")."""
    root = click.get_current_context().find_root()
    return root.invoked_subcommand or root.info_name or "splade-os"


def opaque_id() -> str:
    """The X-Opaque-Id every request of this run carries: splade-os/<command>/<run id>."""
    return f"splade-os/{command_name()}/{run_id()}"


def json_option(help_text: str):
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def print_json(record: dict) -> None:
    """A command's JSON summary on stdout, with the command and the run id."""
    click.echo(json.dumps({"command": command_name(), "run_id": run_id(), **record}, indent=2, ensure_ascii=False,
                          default=str))


def local_node_url(engine: str) -> str:
    """The local node's URL, started when needed and said on stderr even under -q (a cron job whose
    SPLADE_OS_URL went missing must not quietly work on another cluster); SPLADE_OS_NO_LOCAL=1 refuses."""
    from splade_os.node import start_background

    if os.environ.get("SPLADE_OS_NO_LOCAL", "").strip() not in ("", "0"):
        raise NoClusterError("no cluster is configured and SPLADE_OS_NO_LOCAL is set: give --url or SPLADE_OS_URL "
                             "(or --cloud-id)")
    url = start_background(engine=engine, show_progress=not quiet())
    notice(f"Note: no cluster configured (--url, SPLADE_OS_URL, --cloud-id): using the local {engine} node at {url}")
    return url
