"""The import graph of hydra_eval/ and hydra_plugins/ has no new circles (issue 30, "the import graph").

Every module is parsed with `ast` (nothing is imported); an edge is any import in it, at module level or inside
a function, to a module of these packages (`from pkg import mod` counts as an import of `pkg.mod` when that is
a module, else of `pkg`'s __init__; `if TYPE_CHECKING:` imports count too). A circle is a strongly connected
component of more than one module.
Run: python -m pytest tests/test_imports.py -q -rA
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hydra_eval", "hydra_plugins")

# Circles there are today; issue 30 step 4 (the layout) will empty this list. A circle not in it fails, and so
# does one listed here that is gone (take it off).
KNOWN_CIRCLES: list[set[str]] = [
    {"hydra_eval.backends", "hydra_eval.schema"},  # register_configs imports backends.schemas (in a function)
    {"hydra_eval.backends.gguf_cache", "hydra_eval.backends.hf"},  # gguf_cache's TYPE_CHECKING import of hf
    {"hydra_eval.data.lmeval_local", "hydra_eval.data.lmeval_more"},  # lmeval_local imports CONVERTERS late
]


def modules() -> dict[str, Path]:
    """Dotted module name -> its file, for every .py under the packages (a package is its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else base)
    edges = set()
    for target in targets:
        while target and target not in known:  # `import a.b.c` of a name inside a.b: the module a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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
                out.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out, key=sorted)


def test_no_new_import_circles():
    edges = graph()
    found = circles(edges)
    shown = "; ".join(" <-> ".join(sorted(c)) for c in found) or "none"
    print(
        f"import graph: {len(edges)} modules, {sum(map(len, edges.values()))} edges, {len(found)} circles: {shown}"
    )
    new = [c for c in found if c not in KNOWN_CIRCLES]
    assert not new, f"new import circles: {new}"
    gone = [c for c in KNOWN_CIRCLES if c not in found]
    assert not gone, f"circles no longer there, take them off KNOWN_CIRCLES: {gone}"


def test_the_finder_sees_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []
