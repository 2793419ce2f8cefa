"""No import cycle between the library's modules (mssh_keras/**), read from the source.

Every import counts, also one inside a function: a lazy import only hides a cycle from
Python's import machinery, not from the design (the two modules still need each other).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mssh_keras"

# Cycles that exist today and are being removed; each entry is the set of modules of one
# cycle. Leave this empty once they are gone: the test fails when an entry no longer
# occurs, so a fixed cycle cannot come back unnoticed.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The library modules ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from pkg import mod`` imports the module pkg.mod, ``from mod import f`` mod.
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                       for a in node.names]
        else:
            continue
        for target in targets:
            # ``import a.b.c`` of a name that is not a module: its nearest module.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_import_graph_is_read_correctly():
    graph = _graph()
    assert "mssh_keras.data.records" in graph["mssh_keras.data.lspet"]    # absolute
    assert "mssh_keras.geometry" in graph["mssh_keras.codec"]             # from . import x
    assert "mssh_keras.skeleton" in graph["mssh_keras.data.synthetic"]    # from ..x import
    assert "mssh_keras.runtime" in graph["mssh_keras.evaluator"]          # inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        frozenset({"a", "b", "c"})]


def test_no_import_cycle_between_library_modules():
    graph = _graph()
    cycles = set(_cycles(graph))
    new = cycles - KNOWN_CYCLES
    assert not new, "import cycles: " + "; ".join(
        " <-> ".join(sorted(c)) + " (" + ", ".join(
            f"{a} imports {b}" for a in sorted(c) for b in sorted(graph[a] & c)) + ")"
        for c in new)
    gone = KNOWN_CYCLES - cycles
    assert not gone, ("these cycles are gone: remove them from KNOWN_CYCLES in "
                      f"tests/test_imports.py: {[sorted(c) for c in gone]}")


def test_exporting_and_running_a_model_read_no_dataset():
    """The model-file contract, the writers, verification and the runtime take their
    sample crops as arguments (mssh_keras.data.sample_crops makes them for the command
    line): none of them imports mssh_keras.data."""
    graph = _graph()
    for name in ("mssh_keras.export", "mssh_keras.model_file", "mssh_keras.writers",
                 "mssh_keras.quantization", "mssh_keras.verification", "mssh_keras.runtime"):
        data = sorted(m for m in graph[name] if m.split(".")[:2] == ["mssh_keras", "data"])
        assert not data, f"{name} imports {data}"
