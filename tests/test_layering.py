"""The package's import graph runs one way (DESIGN: cli on top; the research instrument above train;
train above export and jepa; optim and model (with eval) below; data and config at the ground)."""

from __future__ import annotations

from jepagolf.sources import module_imports, module_name, package_sources

# Layer of each top-level part of the package (first component after "jepagolf"); a module may import
# modules of a lower layer, or of its own part. Parts missing here fail the test: place new ones.
LAYERS: dict[str, int] = {
    "__main__": 8, "cli": 7,
    "research": 5,  # the research instrument: ablate, ladder, bench, stats, report plots, flops
    "train": 4,
    "export": 3, "jepa": 3,
    "optim": 2, "model": 2,  # model includes eval (scoring a model on validation tokens)
    "summary": 2,  # reads a run's score for train, export, ablate: above config
    "data": 1, "config": 1, "sources": 1, "tensor_bytes": 1,
    "jsonfile": 0,  # bounded reads of the JSON files beside outputs: no package imports
    "outputs": 0,  # output-folder rules for every writer: no package imports
    "recipes": 0,  # pure data that config expands: no imports
    "": 0,  # the package itself (its __init__: the version only)
}


def part(module: str) -> str:
    """'jepagolf.export.records' -> 'export'; 'jepagolf' -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph() -> dict[str, set[str]]:
    sources = package_sources()
    by_name = {module_name(p): p for p in sources}
    graph = {}
    for name, path in by_name.items():
        found = module_imports(sources[path], name, path.endswith("__init__.py"), by_name)
        graph[name] = {m for m in found if m in by_name and m != name}
    return graph


def test_every_import_points_down():
    graph = import_graph()
    unplaced = sorted({part(m) for m in graph} - set(LAYERS))
    assert not unplaced, f"place these parts of the package in LAYERS: {unplaced}"
    upward = [f"{m} -> {t}" for m, targets in sorted(graph.items()) for t in sorted(targets)
              if part(t) != part(m) and LAYERS[part(t)] >= LAYERS[part(m)]]
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_export_never_imports_train_and_nothing_imports_cli():
    graph = import_graph()
    assert not [m for m in graph if part(m) == "export" and any(part(t) == "train" for t in graph[m])]
    assert not [m for m, targets in graph.items() if part(m) not in ("cli", "__main__")
                and any(part(t) == "cli" for t in targets)]


# What each package may import besides itself, as its __init__ docstring states it (the ground: the small
# modules at the package's top level). A part missing here fails the test below: state its rule.
GROUND = frozenset({"", "outputs", "jsonfile", "sources", "recipes", "tensor_bytes", "summary"})
ALLOWED: dict[str, frozenset[str]] = {
    "data": frozenset({"", "outputs", "jsonfile"}),
    "config": frozenset({"recipes"}),
    "model": frozenset({"config"}),
    "optim": frozenset({"config"}),
    "jepa": frozenset({"model", "config"}) | GROUND,
    "export": frozenset({"model", "data", "config"}) | GROUND - {"recipes"},
    "train": frozenset({"export", "jepa", "model", "optim", "data", "config"}) | GROUND,
    "research": frozenset({"train", "export", "jepa", "model", "optim", "data", "config"}) | GROUND,
    "cli": frozenset({"research", "train", "export", "jepa", "model", "optim", "data", "config"}) | GROUND,
}


def test_every_import_keeps_its_package_rules():
    graph = import_graph()
    packages = {part(m) for m in graph if m.count(".") >= 2}  # parts that hold modules: the packages
    assert not packages - set(ALLOWED), f"state the import rule of {sorted(packages - set(ALLOWED))}"
    broken = [f"{m} -> {t}" for m, targets in sorted(graph.items()) for t in sorted(targets)
              if part(m) in ALLOWED and part(t) != part(m) and part(t) not in ALLOWED[part(m)]]
    assert not broken, "imports that break their package's rule:\n" + "\n".join(broken)


def test_the_ground_never_imports_the_trainer_the_artifact_or_the_objective():
    graph = import_graph()
    above = {"train", "export", "jepa", "research", "cli", "__main__"}
    assert not [f"{m} -> {t}" for m, targets in graph.items() for t in targets
                if part(m) in ("model", "optim", "data", "config") and part(t) in above]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_strongly_connected_finds_a_circle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_circles():
    # Every import counts: function-level (lazy) ones and those under TYPE_CHECKING too, inside one
    # package as well as across packages.
    circles = strongly_connected(import_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_no_mixins():
    import ast

    mixins = []
    for path, text in package_sources().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                names = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                mixins += [f"{path}: {node.name}({n})" for n in names if n.endswith("Mixin")]
                if node.name.endswith("Mixin"):
                    mixins.append(f"{path}: class {node.name}")
    assert not mixins, "classes mixed in instead of held:\n" + "\n".join(mixins)
