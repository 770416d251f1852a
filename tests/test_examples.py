"""Runs each example script in a fast mode."""

import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scheduled_regularization_demo(capsys):
    history = load("scheduled_regularization").main(epochs=4, verbose=True)
    out = capsys.readouterr().out
    assert out.count("val_accuracy") == 4
    strengths = history.history["enet/l1"]
    # Linear warm-up over the first three epochs, then the cosine decay.
    assert strengths[0] < strengths[1] < strengths[2]
    assert strengths[3] < strengths[2]
    assert history.history["val_accuracy"][-1] > 0.5
