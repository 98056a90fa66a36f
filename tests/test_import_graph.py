"""The package's import graph: no circles, and no layer imports a layer above it.

Every `import` counts, at module level or inside a function (a function-level import hides
a circle; it does not remove it). Layers, lowest first; a module may import its own layer
and those below.
"""
import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
LAYERS = [
    ("files and config", ["errors", "files", "config", "precision", "images"]),
    ("diffusion", ["diffusion"]),
    ("models", ["models"]),
    ("control mechanisms", ["control"]),
    ("domains", ["domains"]),
    ("data", ["data"]),
    ("pipeline", ["cascade", "stage_controls", "planned_edit", "export", "model_folder",
                  "pipeline"]),
    ("train", ["train"]),
    ("eval", ["eval"]),
    ("serve", ["serve"]),
    ("cli", ["commands", "cli", ""]),  # "" is the package's own __init__
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in (SRC / "fineimagen").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports(names: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its code."""
    edges = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                # `from package import module` imports the module (the package's __init__
                # runs first, but a package's own modules are not an edge to it)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base
                           for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in names and t != name}
        edges[name] = found
    return edges


def layer_of(name: str) -> int:
    top = name.split(".")[1] if "." in name else ""
    for i, (_, tops) in enumerate(LAYERS):
        if top in tops:
            return i
    raise AssertionError(f"{name}: in no layer; add its top-level name to LAYERS")


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert circles(imports(module_names())) == []


def test_no_layer_imports_a_layer_above_it():
    edges = imports(module_names())
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a in sorted(edges) for b in sorted(edges[a]) if layer_of(b) > layer_of(a)]
    assert upward == []


def test_the_checks_see_a_circle_and_an_upward_import():
    edges = {"fineimagen.models.a": {"fineimagen.pipeline"},
             "fineimagen.pipeline": {"fineimagen.models.a"}}
    assert circles(edges) == [["fineimagen.models.a", "fineimagen.pipeline"]]
    assert layer_of("fineimagen.pipeline") > layer_of("fineimagen.models.a")
    # a function-level import counts like a module-level one
    names = module_names()
    assert "fineimagen.pipeline" in imports(names)["fineimagen.cli"]  # inside _export
