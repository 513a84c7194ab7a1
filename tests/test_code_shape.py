"""The package keeps its shape: no function over 80 lines, no import circle between its modules."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "connector"
MAX_LINES = 80


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
