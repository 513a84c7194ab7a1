"""The package keeps its shape: no function over 80 lines, no import circle between its modules,
packages that import one way only (the order below, as docs/design.md draws it), and a command
line of small modules with small commands."""

import ast
import inspect
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "connector"
MAX_LINES = 80
# Bottom to top: a package may import only itself and the packages before it (function-level
# imports included). splade_os/__init__.py, the public API, sits above them all.
ORDER = ["common", "corpus", "formats", "query", "node", "documents", "bulk", "models", "ingest", "evaluate",
         "cluster", "training", "cli"]


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in relative.parts if p != "__init__"]
        yield ".".join(["splade_os", *parts]), path, path.name == "__init__.py"


def test_no_function_longer_than_80_lines():
    long = []
    for name, path, _ in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # The docstring is documentation, not logic.
                body = node.body[1:] if ast.get_docstring(node) else node.body
                lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
                if lines > MAX_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, long


def _imports(name: str, path: Path, is_package: bool) -> set:
    """The splade_os modules `name` imports, lazily or not (the cli and __init__ sit above all)."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never executed
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                target = ".".join(parent + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("splade_os"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("splade_os"))
    return found


def test_no_import_circle():
    modules = {name: (path, pkg) for name, path, pkg in _modules()}
    graph = {name: {m for m in _imports(name, path, pkg) if m in modules and m != name}
             for name, (path, pkg) in modules.items()
             if name not in ("splade_os", "splade_os.cli", "splade_os.__main__")}
    graph = {name: {m for m in deps if m in graph} for name, deps in graph.items()}
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(trail[trail.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_packages_import_one_way():
    modules = {name: (path, pkg) for name, path, pkg in _modules()}
    wrong = []
    for name, (path, is_package) in modules.items():
        if name in ("splade_os", "splade_os.__main__"):
            continue
        own = name.split(".")[1]
        assert own in ORDER, f"{name}: in no package of the order (tests/test_code_shape.py)"
        for imported in _imports(name, path, is_package):
            parts = imported.split(".")
            if len(parts) > 1 and parts[1] in ORDER and ORDER.index(parts[1]) > ORDER.index(own):
                wrong.append(f"{name} imports {imported}")
    assert not wrong, sorted(set(wrong))


def test_every_package_says_what_it_owns_and_may_import():
    for package in ORDER:
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8")))
        assert doc, f"splade_os.{package} has no docstring"
        assert package in ("common", "node") or "May import" in doc, f"splade_os.{package}: say what it may import"


def test_the_command_line_is_small_modules_of_small_commands():
    import click

    from splade_os.cli import cli

    for path in (PACKAGE / "cli").glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 300, f"{path.name}: {lines} lines"

    def commands(group):
        for command in group.commands.values():
            yield command
            if isinstance(command, click.Group):
                yield from commands(command)

    for command in commands(cli):
        arguments = inspect.unwrap(command.callback)
        count = arguments.__code__.co_argcount + arguments.__code__.co_kwonlyargcount
        assert count <= 15, f"{command.name}: {count} parameters"


def test_old_module_paths_still_import_as_the_module_they_became():
    import importlib

    import splade_os

    for old, new in splade_os.MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    from splade_os.index import SpladeIndex  # noqa: F401 - the README's names keep their old homes too
    from splade_os.query import QueryEncoder, bm25_body  # noqa: F401
    from splade_os.vectors import VectorOptions

    assert VectorOptions is splade_os.VectorOptions
    assert importlib.import_module("splade_os.documents.vectors").__spec__.name == "splade_os.documents.vectors"
