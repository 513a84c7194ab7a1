"""The docs match the code: every command and option is in docs/cli.md, and the README's Python
API section runs as written (against a real node)."""

import os
import re
from pathlib import Path

import click
import pytest

from splade_os.cli import cli

ROOT = Path(__file__).resolve().parent.parent
CLI_DOC = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"
CLUSTER_OPTIONS = {"--url", "--engine", "--ca-certs", "--insecure", "--credentials-file", "--aws-region", "--api-key",
                   "--bearer-token", "--client-cert", "--client-key", "--cloud-id"}


def _commands(group, prefix=""):
    for name, command in group.commands.items():
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + name + " ")


def _sections(text: str) -> dict:
    """'## title' -> the text up to the next '## ' heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def test_every_command_and_option_is_in_the_cli_reference():
    sections = _sections(CLI_DOC.read_text(encoding="utf-8"))
    shared = sections["Cluster options"]
    for option in CLUSTER_OPTIONS:
        assert f"`{option}" in shared, option
    for name, command in _commands(cli):
        assert command.help and command.help.strip(), f"{name} has no help text"
        section = sections.get(f"splade-os {name}")
        assert section is not None, f"docs/cli.md has no section '## splade-os {name}'"
        for param in command.params:
            if not isinstance(param, click.Option):
                assert param.name.upper() in section, f"{name}: argument {param.name} undocumented"
                continue
            assert param.help, f"{name} {param.opts[0]} has no help text"
            if CLUSTER_OPTIONS & set(param.opts):
                continue
            assert any(f"`{flag}" in section for flag in param.opts), f"{name}: {param.opts[0]} not in docs/cli.md"


def _python_blocks(text: str, heading: str) -> list:
    section = _sections(text)[heading]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_readme_python_api_runs(opensearch_url, sample_dir, tmp_path, monkeypatch):
    (code,) = _python_blocks(README.read_text(encoding="utf-8"), "Python API")
    assert "http://localhost:9200" in code
    lines = (sample_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:50]
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code.replace("http://localhost:9200", opensearch_url), "README.md", "exec"), namespace)
    assert namespace["stats"].indexed == 50
    assert namespace["hits"] and namespace["hits"][0].score > 0
    assert namespace["body"]["query"]
