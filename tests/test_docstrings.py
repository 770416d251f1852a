"""Runs the ```python examples in every public docstring as doctests."""

import doctest
import importlib
import inspect
import pkgutil
import re

import keras
import numpy as np
import pytest

import keras_regx as kr

FENCE = re.compile(r"```python\n(.*?)```", re.S)
# Every public module of the package, layer modules found as they are added.
MODULES = [
    importlib.import_module(info.name)
    for info in pkgutil.walk_packages(kr.__path__, prefix="keras_regx.")
    if not any(part.startswith("_") for part in info.name.split("."))
]


def public_objects():
    """Every class and function a public module lists in `__all__`, once:
    under the module that defines it (re-exports and aliases skipped)."""
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if (
                (inspect.isclass(obj) or inspect.isfunction(obj))
                and obj.__module__ == module.__name__
                and obj.__name__ == name
            ):
                yield f"{module.__name__}.{name}", obj


def documented():
    """Every public object, and the public methods its class defines."""
    for name, obj in public_objects():
        yield name, obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if inspect.isfunction(member) and not attr.startswith("_"):
                    yield f"{name}.{attr}", member


def examples():
    for name, obj in documented():
        for i, block in enumerate(FENCE.findall(inspect.getdoc(obj) or "")):
            if ">>>" in block:
                yield pytest.param(name, block, id=f"{name}[{i}]")


def test_every_public_module_declares_its_api():
    assert [m.__name__ for m in MODULES if not hasattr(m, "__all__")] == []
    for module in MODULES:
        assert [n for n in module.__all__ if not hasattr(module, n)] == [], module


def test_every_public_class_and_function_has_an_example():
    documented = {p.values[0] for p in examples()}
    missing = [
        name for name, obj in public_objects()
        if name not in documented
        # Base classes for subclassing, documented with their methods.
        and not name.endswith((".Schedule", ".ScheduledRegularizer"))
    ]
    assert missing == []


@pytest.mark.parametrize("name,block", list(examples()))
def test_docstring_example(name, block):
    globs = {"kr": kr, "keras": keras, "np": np}
    test = doctest.DocTestParser().get_doctest(block, globs, name, None, 0)
    runner = doctest.DocTestRunner(
        verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    runner.run(test, out=lambda s: pytest.fail(s, pytrace=False))
    assert runner.failures == 0
