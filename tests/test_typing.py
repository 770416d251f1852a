"""The public API is typed: `py.typed` ships, every argument is annotated."""

import inspect
import pathlib

import pytest
from test_docstrings import public_objects

import keras_regx as kr


def test_the_package_says_it_is_typed():
    assert (pathlib.Path(kr.__file__).parent / "py.typed").is_file()


def _signature(obj):
    return inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)


@pytest.mark.parametrize("name,obj", list(public_objects()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_public_argument_is_annotated(name, obj):
    parameters = _signature(obj).parameters.values()
    missing = [p.name for p in parameters
               if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               and p.annotation is inspect.Parameter.empty]
    assert missing == [], f"{name}: unannotated {missing}"
    if inspect.isfunction(obj):
        assert _signature(obj).return_annotation is not inspect.Signature.empty, name
