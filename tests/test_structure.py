"""The shape of the code base: imports that run one way, no module reaching into another's private
names, files and functions of a readable size, and configs whose every key says what it does."""
import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "g2g"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 350, 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported g2g module, imported names) of every import in the file, at any depth."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] == "g2g":
                out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "g2g"]
    return out


FILES = sorted(SRC.rglob("*.py"))
MODULES = {_module_name(p) for p in FILES}


def test_no_module_imports_another_modules_private_names():
    bad = [f"{p.relative_to(SRC)}: {name} from {target}" for p in FILES for target, names in _imports(p)
           for name in names if name.startswith("_") and not name.startswith("__") and target != _module_name(p)]
    assert not bad, bad


def test_imports_have_no_cycle():
    """Also counting imports inside functions: every module of the package, as a graph, is acyclic."""
    graph = {}
    for p in FILES:
        edges = set()
        for target, names in _imports(p):
            # `from .pkg import mod` imports the module pkg.mod when there is one
            edges |= {f"{target}.{n}" if f"{target}.{n}" in MODULES else target for n in names} or {target}
        graph[_module_name(p)] = {e for e in edges if e in MODULES and e != _module_name(p)}
    # a package's __init__ may re-export its modules; importing a module does not import its siblings
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt.startswith(node + "."):  # a package importing its own modules
                continue
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_files_and_functions_stay_readable():
    long_files = [f"{p.relative_to(SRC)}: {n}" for p in FILES if (n := p.read_text().count("\n")) > MAX_FILE_LINES]
    long_functions = []
    for p in FILES:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{p.relative_to(SRC)}:{node.lineno} {node.name}: {n}")
    assert not long_files and not long_functions, (long_files, long_functions)


@pytest.mark.parametrize("config", sorted((SRC / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_config_key_has_a_comment(config):
    bare = [line for line in config.read_text().splitlines()
            if re.match(r"^\s*[a-z_0-9]+:", line) and "#" not in line and not line.rstrip().endswith(":")]
    assert not bare, bare
