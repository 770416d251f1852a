import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()


def jit_compile_options():
    """The compiled-step variants worth covering on this backend."""
    if BACKEND == "torch":
        return ["auto"]
    return ["auto", True]


class StepLosses(keras.callbacks.Callback):
    """Recovers each step's loss from the running epoch mean Keras logs."""

    def on_train_begin(self, logs=None):
        self.losses = []

    def on_epoch_begin(self, epoch, logs=None):
        self._seen = 0
        self._mean = 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        n = self._seen + 1
        self.losses.append(mean * n - self._mean * self._seen)
        self._seen, self._mean = n, mean


def run_python(code, tmp_path):
    """Runs `code` in a fresh Python process on this backend; returns its JSON."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
