"""No module imports another module's `_private` name.

What several modules share lives in a private module under a public name
(`keras_regx._validation.check_real`), so a private name (`_compile`) is one
module's own and can change with it. Importing a private module itself
(`from keras_regx import _proximal`) is how its public names are reached.
"""

import ast
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = ("keras_regx", "tests", "examples", "benchmarks")


def _sources():
    for folder in FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _is_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _private_imports(path):
    where = path.relative_to(ROOT) if ROOT in path.parents else path
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if node.module.split(".")[0] != "keras_regx":
            continue
        for alias in node.names:
            name = alias.name
            if name.startswith("_") and not name.startswith("__") and not _is_module(
                    f"{node.module}.{name}"):
                yield f"{where}:{node.lineno}: from {node.module} import {name}"


def test_no_module_imports_another_modules_private_name():
    found = [line for path in _sources() for line in _private_imports(path)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source, bad", [
    ("from keras_regx.sparsity import _compile", True),
    ("from keras_regx import _proximal", False),
    ("from keras_regx._validation import check_real", False),
    ("from keras_regx.version import __version__", False),
])
def test_the_check_tells_private_names_from_private_modules(tmp_path, source, bad):
    path = tmp_path / "probe.py"
    path.write_text(source + "\n")
    assert bool(list(_private_imports(path))) == bad
