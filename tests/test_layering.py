"""Specs for the package layout: the folders are the pipeline and imports run one way, down it.

Every import counts, the ones inside functions included (hiding an import in a function does not make an
upward dependency go away). Measuring code alone touches the device, and no module outgrows the line budget.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Top-level parts of `emulator` in pipeline order: a module may import its own part and the parts before it.
LAYERS = ("errors", "units", "precision", "stats", "files", "fields", "published", "hardware", "stacks", "workloads",
          "scenario", "engine", "cluster", "serving", "predict", "sizing", "launch", "results", "measure", "calibrate",
          "validation", "cli", "__main__")
LINE_BUDGET = 400
DEVICE_OWNER = "emulator.measure"
ALLOWED_CYCLES = ("kernels",)  # the kernel registry and its cost rules register each other


def _modules() -> dict[str, Path]:
    out = {}
    for package in ("emulator", "kernels"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere in its file (a package import counts as its __init__)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    part = module.split(".")[1] if module.count(".") else ""
    return LAYERS.index(part)


def _reexport_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, (ast.Import, ast.ImportFrom, ast.Assign, ast.Expr)) for n in body)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), package re-exports left out."""
    graph = {m: {t for t in deps if not (t.startswith(m + ".") and _reexport_only(MODULES[m]))}
             for m, deps in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_part_of_the_package_has_a_layer() -> None:
    """A new top-level module or package must be placed in the pipeline order before it can land."""
    parts = {m.split(".")[1] for m in MODULES if m.startswith("emulator.")}
    assert parts <= set(LAYERS), f"place these in LAYERS: {sorted(parts - set(LAYERS))}"


def test_no_module_imports_up_the_pipeline() -> None:
    """A module imports only from its own part of the pipeline and the parts before it."""
    upward = [f"{m} -> {t}" for m, deps in GRAPH.items() if m.startswith("emulator.")
              for t in deps if t.startswith("emulator.") and _layer(t) > _layer(m)]
    assert upward == []


def test_kernels_never_import_the_emulator() -> None:
    """The kernel library is hardware-free and stands alone."""
    assert [f"{m} -> {t}" for m, deps in GRAPH.items() if m.startswith("kernels") for t in deps
            if t.startswith("emulator")] == []


def test_no_import_cycles_but_the_kernel_registry() -> None:
    """Modules form a DAG; only the kernel registry's plugins may refer back to it."""
    assert [c for c in _cycles() if not all(m.startswith(ALLOWED_CYCLES) for m in c)] == []


def test_only_the_measure_package_touches_the_device() -> None:
    """`torch.cuda` and NVML appear in `emulator.measure` alone."""
    touching = [m for m, path in MODULES.items() if not m.startswith(DEVICE_OWNER)
                and ("torch.cuda" in path.read_text() or "pynvml" in path.read_text())]
    assert touching == []


def test_modules_stay_small() -> None:
    """No module over the line budget: split by responsibility before it grows past it."""
    big = {m: n for m, path in MODULES.items() if (n := len(path.read_text().splitlines())) > LINE_BUDGET}
    assert big == {}


def test_the_checks_see_imports_inside_functions(tmp_path: Path) -> None:
    """An import hidden in a function body is an edge of the graph like any other."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from emulator.cli import main\n    return main\n")
    assert "emulator.cli" in _imports("emulator.engine.m", path)
