"""The structure of the package (issue 16 item 9): what ``import spikeshield`` loads, the import graph, the
per-forward input check."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import spikeshield as ss
from spikeshield.validation import _assert_images_async, check_images, unclamped_pixels

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "spikeshield"


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (one thread for torch); its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout


# ------------------------------------------------------------------------------------------- import side effects
def test_import_loads_no_matplotlib_and_starts_no_numba_threads():
    out = _run("""
        import sys
        import spikeshield
        from numba.np.ufunc import parallel
        from spikeshield.neurons import lif_kernels
        print("matplotlib" in sys.modules, parallel._is_initialized, lif_kernels._pool_started)
    """)
    assert out.split() == ["False", "False", "False"]


def test_plots_and_numba_threads_load_on_first_use():
    out = _run("""
        import os, sys
        import torch
        import spikeshield as ss
        from numba.np.ufunc import parallel
        from spikeshield.report import plot_sweep  # the lazy attribute
        print("matplotlib" in sys.modules, callable(plot_sweep), ss.report.plot_history.__module__)
        policy = os.environ.get("OMP_WAIT_POLICY")
        model = ss.models.create_model("lenet", T=2).eval()
        with torch.no_grad():
            model(torch.rand(2, 1, 28, 28))
        print(parallel._is_initialized, os.environ.get("OMP_WAIT_POLICY") == policy)
    """)
    assert out.split() == ["True", "True", "spikeshield.report.plots", "True", "True"]


def test_report_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no_such_plot"):
        ss.report.no_such_plot  # noqa: B018


def test_defenses_reachable_from_the_package():
    assert "defenses" in ss.__all__
    assert ss.defenses.hosnn.__name__ == "spikeshield.defenses.hosnn"


# ------------------------------------------------------------------------------------------------ import cycles
def _modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module under ``src/package``: dotted name -> file (a package is its ``__init__.py``)."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _module_level(body: list[ast.stmt]):
    """The import statements run when the module is imported: not those in functions or ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if test not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.ClassDef):
            yield from _module_level(node.body)
        else:  # try / with / for / while / match blocks run at import time
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, []) or []:
                    yield from _module_level(child.body if isinstance(child, ast.excepthandler | ast.match_case)
                                             else [child])


def _executed(name: str, modules: dict[str, Path]) -> list[str]:
    """The spikeshield modules that importing ``name`` runs: each enclosing package's ``__init__``, then it."""
    parts = name.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in modules]


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` its module-level imports run.

    ``import a.b.c`` and ``from a.b.c import x`` run ``a``, ``a.b`` and ``a.b.c`` (and ``a.b.c.x`` when that is a
    module). Edges to the importing module's own enclosing packages are left out: a module is only ever imported
    while its packages' ``__init__`` is already running, so such an import never runs them.
    """
    modules = _modules(src, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        ancestors = set(_executed(here, modules)) if not is_package else set(_executed(name, modules)) - {name}
        targets: set[str] = set()
        for node in _module_level(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets.update(_executed(alias.name, modules))
                continue
            if node.level:  # relative: from the package of this module, up level - 1 packages
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets.update(_executed(origin, modules))
            for alias in node.names:
                if f"{origin}.{alias.name}" in modules:
                    targets.add(f"{origin}.{alias.name}")
        graph[name] = targets - ancestors - {name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one closed path through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_closed_path(c, graph) for c in components]


def _closed_path(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """One cycle through the first module of ``component`` (breadth-first, so a shortest one)."""
    start = min(component)
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError("not a strongly connected component")  # pragma: no cover


def cycles_touching(package: str, graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The import cycles through any module of ``package`` (the package itself or a module under it)."""
    graph = import_graph() if graph is None else graph
    inside = lambda m: m == package or m.startswith(package + ".")  # noqa: E731
    return [cycle for cycle in import_cycles(graph) if any(inside(m) for m in cycle)]


@pytest.mark.parametrize("package", ["spikeshield.models", "spikeshield.evaluation", "spikeshield.attacks"])
def test_no_import_cycle(package):
    cycles = cycles_touching(package)
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_sees_cycles_through_package_inits(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text("import pkg.sub.d\n\ndef f():\n    from pkg import c\n")  # runs pkg.sub first
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("from pkg import a\nfrom pkg.sub import d\n")  # d: pkg.sub's module
    (pkg / "sub" / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (pkg / "c.py").write_text("import pkg.sub.d\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.d"}  # the function-level import is not counted
    assert graph["pkg.sub.b"] == {"pkg.a", "pkg.sub.d"}  # pkg and pkg.sub: b's own packages, already running
    assert graph["pkg.sub.d"] == set()  # TYPE_CHECKING imports never run
    assert graph["pkg.sub"] == {"pkg.sub.b"}  # relative import
    cycles = import_cycles(graph)
    assert cycles == [["pkg.a", "pkg.sub", "pkg.sub.b", "pkg.a"]]  # only through pkg.sub's __init__
    assert cycles_touching("pkg.sub", graph) and not cycles_touching("pkg.c", graph)


# -------------------------------------------------------------------------------------------- per-forward checks
def test_check_images_on_cpu_keeps_exact_errors():
    check_images(torch.rand(2, 1, 4, 4), 1, 4, "d")
    with pytest.raises(ValueError, match=r"got range \[-0\.5, 1\]"):
        check_images(torch.tensor([-0.5, 1.0]).reshape(1, 1, 1, 2).expand(1, 1, 2, 2), 1, 2, "d")
    with pytest.raises(ValueError, match="NaN or inf"):
        check_images(torch.full((1, 1, 2, 2), float("inf")), 1, 2, "d")
    with unclamped_pixels():
        check_images(torch.full((1, 1, 2, 2), 3.0), 1, 2, "d")
        with pytest.raises(ValueError, match="NaN or inf"):
            check_images(torch.full((1, 1, 2, 2), float("nan")), 1, 2, "d")


def test_device_side_asserts_check_the_same_values():
    """The accelerator path, run on CPU tensors (where ``torch._assert_async`` raises at once)."""
    _assert_images_async(torch.rand(2, 1, 4, 4), clamped=True)
    _assert_images_async(torch.full((1, 1, 2, 2), 3.0), clamped=False)
    with pytest.raises(RuntimeError, match="pixel values must lie in"):
        _assert_images_async(torch.full((1, 1, 2, 2), 3.0), clamped=True)
    with pytest.raises(RuntimeError, match="NaN or inf"):
        _assert_images_async(torch.full((1, 1, 2, 2), float("nan")), clamped=False)
    _assert_images_async(torch.rand(2, 1, 4, 4, requires_grad=True), clamped=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_check_images_does_not_synchronise_on_cuda():
    x = torch.rand(2, 1, 28, 28, device="cuda")
    model = ss.models.create_model("lenet", T=2).cuda().eval()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        check_images(x, 1, 28, "fashion_mnist")
        with unclamped_pixels():
            check_images(x * 3, 1, 28, "fashion_mnist")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with torch.no_grad():
        assert model(x).shape == (2, 10)
    torch.cuda.synchronize()
