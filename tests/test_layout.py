"""The package's shape: module size, imports, lint and the architecture page."""

import ast
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_3t")
MAX_MODULE_LINES = 450

pytestmark = pytest.mark.one_backend


def _modules():
    """Module name -> path, for every `.py` file of the package."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                parts = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(path):
    """`(module, names)` for every import of a file, function-local ones too."""
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def _graph():
    """Module -> the package's modules it imports."""
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for module, names in _imports(path):
            if module in MODULES:
                edges.add(module)
            for imported in names:
                if f"{module}.{imported}" in MODULES:
                    edges.add(f"{module}.{imported}")
        # A package's __init__ runs before its submodules: not an edge back.
        graph[name] = {m for m in edges if m != name and not name.startswith(m + ".")}
    return graph


def test_no_module_is_longer_than_the_limit():
    lengths = {}
    for name, path in MODULES.items():
        with open(path, encoding="utf-8") as file:
            lengths[name] = sum(1 for _ in file)
    too_long = {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_no_import_cycle_even_through_function_local_imports():
    graph = _graph()
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return
        if module in visiting:
            cycle = visiting[visiting.index(module) :] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_library_imports_nothing_from_the_demo():
    graph = _graph()
    core = [m for m in graph if not m.startswith("keras_3t.demo") and m != "keras_3t.__main__"]
    offenders = {m: sorted(i for i in graph[m] if i.startswith("keras_3t.demo")) for m in core}
    assert not {m: i for m, i in offenders.items() if i}


def test_no_module_imports_another_modules_private_names():
    crossing = []
    for name, path in MODULES.items():
        for module, names in _imports(path):
            if module.startswith("keras_3t") and module != name:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                crossing += [f"{name}: {module}.{n}" for n in private]
    assert not crossing


def test_the_architecture_page_names_every_module():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as file:
        page = file.read()
    missing = []
    for path in MODULES.values():
        relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
        if relative.endswith("__init__.py") and os.path.getsize(path) < 400:
            continue  # a package's short __init__ only re-exports
        if relative not in page:
            missing.append(relative)
    assert not missing, f"docs/architecture.md does not name: {missing}"


def _ruff():
    # The environment's own ruff (constraints.txt pins it), else one on PATH.
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    if not os.path.exists(ruff):
        ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    return ruff


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [_ruff(), *command, "."], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
