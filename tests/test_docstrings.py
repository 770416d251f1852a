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
    for module in MODULES:
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj


def examples():
    for name, obj in public_objects():
        for i, block in enumerate(FENCE.findall(inspect.getdoc(obj) or "")):
            if ">>>" in block:
                yield pytest.param(name, block, id=f"{name}[{i}]")


def test_every_public_class_has_an_example():
    documented = {name for name, _ in ((p.values[0], None) for p in examples())}
    missing = [
        name for name, obj in public_objects()
        if inspect.isclass(obj) and name not in documented
        and not name.endswith((".Schedule", ".ScheduledRegularizer", ".ScheduledLayer"))
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
