"""Two JAX processes joined by `jax.distributed` train like one process.

Keras 3's multi-host engine is JAX with `keras.distribution`, so this test
runs on the JAX backend only (TensorFlow's `MultiWorkerMirroredStrategy` does
not run Keras 3's `fit()`, keras-team/keras#20585; PyTorch has no Keras
distribution). Two processes on loopback, CPU collectives over gloo, each
feeding its half of every global batch to `DataParallel`, give the weights,
logged strengths, sparsity and regularization loss of one process on the
whole batches, with a scheduled ElasticNet, a proximal L1, the
`RegularizationScheduler` and the `SparsityMonitor`.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import BACKEND

pytestmark = pytest.mark.skipif(
    BACKEND != "jax", reason="multi-host training in Keras 3 is JAX's keras.distribution"
)

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import jax
    rank, port = int(sys.argv[1]), sys.argv[2]
    if rank >= 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                                   num_processes=2, process_id=rank)
    import keras, numpy as np
    import keras_regx as kr

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1))).astype("float32")
    batch = 16
    if rank >= 0:
        distribution = keras.distribution.DataParallel(devices=jax.devices())
        distribution.auto_shard_dataset = False
        keras.distribution.set_distribution(distribution)
        half = batch // 2  # this process's half of every global batch
        rows = np.concatenate([np.arange(b + rank * half, b + (rank + 1) * half)
                               for b in range(0, len(x), batch)])
        x, y, batch = x[rows], y[rows], half
    keras.utils.set_random_seed(0)
    enet = kr.ElasticNet(kr.schedules.Linear(0.0, 1e-2, end_step=8), 1e-3, name="enet")
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, kernel_regularizer=enet),
        keras.layers.Dense(1, kernel_regularizer=kr.L1(0.3, proximal=True, name="prox")),
    ])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    history = model.fit(x, y, batch_size=batch, epochs=3, shuffle=False, verbose=0,
                        callbacks=[kr.callbacks.RegularizationScheduler(),
                                   kr.callbacks.SparsityMonitor()])
    print(json.dumps({
        "weights": [np.asarray(keras.ops.convert_to_numpy(w)).tolist() for w in model.weights],
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }))
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, KERAS_BACKEND="jax")
    port = str(_free_port())
    # rank -1: one process on the whole batches; ranks 0 and 1: the pair.
    runs = [subprocess.Popen([sys.executable, str(script), str(rank), port], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for rank in (-1, 0, 1)]
    results = []
    try:
        for run in runs:
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, err[-4000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:  # a failed or hung process must not leave its partner waiting
        for run in runs:
            if run.poll() is None:
                run.kill()
    one, *pair = results
    for got in pair:
        for a, b in zip(got["weights"], one["weights"]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert set(got["history"]) == set(one["history"]) >= {
            "loss", "enet/l1", "sparsity", "regularization_loss"}
        for key, values in one["history"].items():
            np.testing.assert_allclose(got["history"][key], values, rtol=1e-5, err_msg=key)
    assert one["history"]["sparsity/dense_1"][-1] > 0  # the proximal L1 made zeros
