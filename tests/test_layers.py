"""The layers point one way, `pipelines` -> `assets` -> `gan_core`, and no module imports itself through others.

Every project module's imports are read from its source (ast): top-level and deferred ones alike, and module names
written as strings (`python -m NAME`, a reconstructable job's module), since those load the module just the same.
Importing every module starts nothing and reads none of the project's environment variables: they are read when a
run, a command or a worker starts."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT

# each layer may import itself and the layers before it, never one after it
LAYERS = ("gan_core", "assets", "pipelines")
# third-party packages a layer must not import: the library stays usable without Dagster
FORBIDDEN = {"gan_core": ("dagster", "dagster_pipes", "dagster_celery", "dagster_k8s", "dagster_postgres")}


def project_modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the three layers."""
    modules = {}
    for package in LAYERS:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _known_prefix(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str, known: dict[str, Path], is_package: bool = False) -> tuple[set[str], set[str]]:
    """(project modules `module` loads, top-level names of the third-party packages it imports), read from its
    `source`; `is_package`: the source is a package's __init__.py (relative imports start from the package itself)."""
    package = module if is_package else module.rpartition(".")[0]
    project, external = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import submodule` loads the submodule; `from pkg import name` loads pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            targets = [node.value]  # `-m pipelines.x`, build_reconstructable_job("pipelines.x", ...)
        else:
            continue
        for target in targets:
            found = _known_prefix(target, known)
            if found is None:
                external.add(target.split(".")[0])
            elif found != module:
                project.add(found)
    return project, external


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    known = project_modules()
    graph, external = {}, {}
    for module, path in known.items():
        graph[module], external[module] = imports_of(module, path.read_text(), known, path.name == "__init__.py")
    return graph, external


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_imports_point_from_pipelines_to_assets_to_gan_core_only() -> None:
    graph, external = import_graph()
    assert {"gan_core.train", "assets.resources", "pipelines.definitions"} <= set(graph)  # the walk sees the layers
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a))
    assert upward == [], "imports that point up a layer (pipelines -> assets -> gan_core):\n" + "\n".join(upward)
    forbidden = sorted(
        f"{module} imports {name}"
        for module, names in external.items()
        for name in names
        if name in FORBIDDEN.get(module.split(".")[0], ())
    )
    assert forbidden == [], "\n".join(forbidden)


def test_no_module_imports_itself_through_others() -> None:
    graph, _ = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_walk_sees_deferred_and_string_imports_and_a_circle() -> None:
    """The checks themselves catch what they are for: a deferred import, a module named in a string, a circle."""
    known = {"gan_core.a": Path("a.py"), "assets.b": Path("b.py"), "pipelines.c": Path("c.py")}
    source = "import torch\n\ndef f():\n    from pipelines.c import x\n    return ['-m', 'assets.b']\n"
    assert imports_of("gan_core.a", source, known) == ({"pipelines.c", "assets.b"}, {"torch"})
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


IMPORT_EVERY_MODULE = """
import _collections_abc, importlib, os, sys
# where os.environ's own methods live (frozen modules in Python 3.11)
MAPPING_FILES = {os.getenv.__code__.co_filename, _collections_abc.Mapping.get.__code__.co_filename}
roots = tuple(os.path.join(sys.argv[1], layer) + os.sep for layer in ("gan_core", "assets", "pipelines"))
reads = []
environ_class = type(os.environ)
original_getitem = environ_class.__getitem__

def recording_getitem(self, key):
    frame = sys._getframe(1)  # the code that reads, past os.environ.get / os.getenv / `in` themselves
    while frame.f_code.co_filename in MAPPING_FILES:
        frame = frame.f_back
    if frame.f_code.co_filename.startswith(roots):
        reads.append(f"{key} at {frame.f_code.co_filename}:{frame.f_lineno}")
    return original_getitem(self, key)

environ_class.__getitem__ = recording_getitem
for name in sys.argv[2:]:
    importlib.import_module(name)
environ_class.__getitem__ = original_getitem
from celery import _state
print("ENV", reads)
print("CELERY_APPS", len(list(_state._apps)))
print("THREADS", sorted(t.name for t in __import__("threading").enumerate()))
"""


def test_importing_every_module_reads_no_setting_and_starts_nothing() -> None:
    modules = sorted(project_modules())
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE, str(REPO_ROOT), *modules],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in completed.stdout.splitlines() if line.split(" ")[0].isupper())
    assert lines["ENV"] == "[]", f"environment read at import: {lines['ENV']}"
    assert lines["CELERY_APPS"] == "0", "a Celery app was built at import"
    assert lines["THREADS"] == "['MainThread']", f"threads started at import: {lines['THREADS']}"
