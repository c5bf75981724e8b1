"""The package's shape: module size, imports, lint, the tests' layout and the
architecture page."""

import ast
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_3t")
MAX_MODULE_LINES = 450
# Modules without a test module of their own, and the tests that check them.
TESTED_ELSEWHERE = {
    "keras_3t": "tests/test_package.py",
    "keras_3t.__main__": "tests/test_main.py",
    "keras_3t.version": "tests/test_main.py",
    "keras_3t.distributed": "tests/distributed/test_distributed.py",
    "keras_3t.saving": "tests/saving/test_saving.py",
    "keras_3t.data.decoding": "tests/data/test_bad_data.py",
    "keras_3t.collection.folder": "tests/collection/test_writer.py",
    "keras_3t.demo.toy": "tests/model/test_three_tower_model.py",
    "keras_3t.model.frozen_towers": "tests/model/test_three_tower_model.py",
    "keras_3t.evaluation.checks": "tests/evaluation/test_zero_shot.py",
    "keras_3t.evaluation.evaluate": "tests/evaluation/test_alpha_sweep.py",
    # Each backend's step, run by fit on the suite's backend.
    "keras_3t.training": "tests/model/test_three_tower_model.py",
    "keras_3t.training.jax": "tests/model/test_three_tower_model.py",
    "keras_3t.training.tensorflow": "tests/model/test_three_tower_model.py",
    "keras_3t.training.torch": "tests/model/test_three_tower_model.py",
}

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


def test_every_module_has_its_test_module():
    """`keras_3t/a/b.py` is tested in `tests/a/test_b.py`, `keras_3t/c.py` in
    `tests/test_c.py`; a package's `__init__` that only re-exports needs none."""
    missing = {}
    for name, path in MODULES.items():
        parts = name.split(".")[1:]
        if path.endswith("__init__.py") and name not in TESTED_ELSEWHERE:
            with open(path, encoding="utf-8") as file:
                tree = ast.parse(file.read())
            if not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in tree.body):
                continue
        expected = os.path.join("tests", *parts[:-1], f"test_{parts[-1]}.py") if parts else None
        test = TESTED_ELSEWHERE.get(name, expected)
        if not os.path.exists(os.path.join(ROOT, test)):
            missing[name] = test
    assert not missing, f"modules without tests: {missing}"
    unused = {n for n in TESTED_ELSEWHERE if n not in MODULES}
    assert not unused, f"TESTED_ELSEWHERE names no module: {unused}"


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
