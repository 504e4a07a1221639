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
