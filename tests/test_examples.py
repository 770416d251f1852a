"""Runs each example script in a fast mode."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

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


def test_custom_training_loop_demo(capsys):
    module = load("custom_training_loop")
    history, logged, accuracy = module.main(**module.FAST)
    out = capsys.readouterr().out
    assert out.count("enet/l1") == module.FAST["epochs"] and "test accuracy" in out
    # Every batch logs the values of its step, counted across epochs (the
    # model has no optimizer), as fit() would: Linear over all 20 steps.
    steps = len(logged)
    assert steps == module.FAST["epochs"] * (module.FAST["train_size"] // module.BATCH)
    np.testing.assert_allclose([b["enet/l1"] for b in logged],
                               [1e-3 * s / steps for s in range(steps)], rtol=1e-6)
    np.testing.assert_allclose([b["drop/rate"] for b in logged],
                               [0.3 * s / steps for s in range(steps)], rtol=1e-6)
    assert history[-1]["loss"] < history[0]["loss"] and accuracy > 0.5


def test_concrete_dropout_demo(capsys):
    module = load("concrete_dropout")
    results = module.main(**module.FAST)
    out = capsys.readouterr().out
    assert "p(output)" in out and len(out.strip().splitlines()) == 3 + len(results)
    assert [r["n"] for r in results] == [10, 1000]
    # The wrappers after the first drop hidden units. Their mean rate, measured
    # with seeds 0-3 on each backend: 0.14-0.33 at N = 10, 0.04-0.06 at
    # N = 1000, a fall of 0.10 or more (0.25 or more with seed 0, used here).
    small, large = (sum(r["rates"][1:]) / len(r["rates"][1:]) for r in results)
    assert small - large > 0.05
    assert all(r["rmse"] == r["rmse"] and r["spread"] > 0.0 for r in results)  # no NaN


def test_exact_sparsity_demo(capsys, tmp_path):
    module = load("exact_sparsity")
    png = tmp_path / "sparsity.png"
    results = module.main(**module.FAST, out=str(png))
    out = capsys.readouterr().out
    assert "proximal_l1" in out and len(out.strip().splitlines()) == 4 + len(results)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    none, keras_l1, proximal = results
    assert [r["config"] for r in results] == ["none", "keras_l1", "proximal_l1"]
    assert all(len(r["curve"]) == module.FAST["epochs"] for r in results)
    # Only the soft-threshold step makes exact zeros: Keras' L1 (and no
    # penalty) leaves none. Measured in fast mode: 0.11-0.12 on each backend.
    assert none["exact"] == keras_l1["exact"] == 0.0
    assert proximal["exact"] > 0.0
    assert proximal["near"] >= proximal["exact"]


def test_compare_regularizers_demo(capsys, tmp_path):
    module = load("compare_regularizers")
    png = tmp_path / "compare.png"
    rows = module.main(**module.FAST, out=str(png))
    out = capsys.readouterr().out
    configs = [name for name, _, _ in module.CONFIGS]
    assert [row["config"] for row in rows] == configs
    # One progress line per configuration, then the table: one row each
    # (wrapped text never starts a line with a configuration's name).
    assert out.count(" -> ") == len(configs)
    assert all(sum(line.startswith(name + " ") for line in out.splitlines()) == 2
               for name in configs)
    for heading in ("Regime:", "Protocol:", "Test accuracy:", "Train-test gap:",
                    "Exact zeros:"):
        assert sum(line.startswith(heading) for line in out.splitlines()) == 1
    assert f"figure saved to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    epochs = module.FAST["epochs"]
    for row in rows:
        grid = module.FAST["grids"][row["config"]]
        # Chosen on validation data among the grid's strengths only.
        assert row["strength"] in grid and len(row["scores"]) == len(grid)
        assert [s["seed"] for s in row["seeds"]] == list(range(module.FAST["seeds"]))
        for run in row["seeds"]:
            assert 0.0 <= run["train_accuracy"] <= 1.0 and 0.0 <= run["test_accuracy"] <= 1.0
            assert 0.0 <= run["sparsity"] <= 1.0 and run["seconds"] > 0.0
            assert 0 <= run["noise_dropped"] <= row["noise_inputs"]
            assert 0 <= run["pixels_dropped"] <= module.PIXELS
        assert abs(row["gap"] - (row["train_accuracy"] - row["test_accuracy"])) < 1e-9
        for key in ("val_curve", "sparsity_curve", "noise_curve", "pixels_curve"):
            assert len(row[key]) == epochs
        # The figures at the end of seed 0's run are its curves' last points.
        assert row["sparsity_curve"][-1] == row["seeds"][0]["sparsity"]
        assert row["noise_curve"][-1] == row["seeds"][0]["noise_dropped"]
    assert rows[0]["vs_none"] == 0.0
    # Only the proximal steps make exact zeros (group lasso's whole rows need
    # more than the smoke test's steps); subgradient penalties and dropout
    # leave none. Measured in fast mode, proximal L1: 0.07-0.08 on each backend.
    sparsity = {row["config"]: row["sparsity"] for row in rows}
    assert sparsity.pop("proximal_l1") > 0.0
    sparsity.pop("group_lasso")
    assert set(sparsity.values()) == {0.0}
    dropped = {row["config"]: row["noise_dropped"] + row["pixels_dropped"] for row in rows}
    assert all(dropped[name] == 0 for name in configs
               if name not in ("proximal_l1", "group_lasso"))


# KerasTuner calls threading.currentThread() and getName(), deprecated since
# Python 3.10.
@pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:getName:DeprecationWarning")
@pytest.mark.parametrize("tuner", ["keras_tuner", "loop"])
def test_tune_strength(capsys, tmp_path, monkeypatch, tuner):
    if tuner == "loop":  # the fallback when keras-tuner is not installed
        monkeypatch.setitem(sys.modules, "keras_tuner", None)
    module = load("tune_strength")
    result = module.main(**module.FAST, directory=str(tmp_path))
    out = capsys.readouterr().out
    expected = "keras_tuner.GridSearch" if tuner == "keras_tuner" else "grid search"
    assert result["method"].startswith(expected) and expected in out
    assert sorted(result["scores"]) == sorted(module.FAST["strengths"])
    assert all(0.0 <= s <= 1.0 for s in result["scores"].values())
    assert result["scores"][result["best"]] == max(result["scores"].values())
    assert 0.0 <= result["test_accuracy"] <= 1.0


def test_regularize_pretrained(capsys):
    module = load("regularize_pretrained")
    rows = module.main(**module.FAST)
    assert [row["config"] for row in rows] == [
        "none", "kr.L2(1e-3)", "kr.L1(1e-3, proximal=True)"]
    for row in rows:
        assert row["start_gap"] == 0.0  # the copies start from the pretrained weights
        assert row["removed_gap"] <= 1e-6 and row["regularizers_left"] == 0
        assert 0.0 <= row["test_accuracy"] <= 1.0
    assert rows[0]["exact_zeros"] == rows[1]["exact_zeros"] == 0.0
    assert rows[2]["exact_zeros"] > 0.0
    assert "fine-tuned copy" in capsys.readouterr().out


def test_mc_dropout_uncertainty_demo(capsys, tmp_path):
    import keras
    import numpy as np

    import keras_regx as kr

    module = load("mc_dropout_uncertainty")
    png = tmp_path / "mc.png"
    result = module.main(**module.FAST, out=str(png))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(sum(line.startswith(name + " ") for line in lines) == 1
               for name in module.REGIONS)  # one table row per region
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid, mean, std = result["grid"], result["mean"], result["std"]
    assert mean.shape == std.shape == grid.shape == (241, 1)
    assert mean.dtype == std.dtype == np.float32
    assert np.isfinite(mean).all() and (std > 0.0).all()  # MCDropout drops at inference
    regions = result["regions"]
    assert set(regions) == set(module.REGIONS)
    for r in regions.values():
        assert 0.0 <= r["coverage"] <= r["coverage_total"] <= 1.0
        assert r["std"] > 0.0 and r["rmse"] > 0.0
    # Beyond the training inputs the spread grows: 3.4 to 4.9 times the
    # spread inside them, measured in fast mode with seeds 0-2 on each backend.
    assert regions["beyond"]["std"] > 2.0 * regions["in"]["std"]
    assert 0.0 < result["noise"] < 1.0
    # mc_predict's mean and std are those of independent calls of the model
    # (each draws new masks): the mean within 5 standard errors at every
    # point, the std within 20% on average.
    model, x = result["model"], grid[::8]
    calls = np.stack([keras.ops.convert_to_numpy(model(x, training=False))
                      for _ in range(200)])
    mc_mean, mc_std = kr.utils.mc_predict(model, x, samples=200)
    assert (np.abs(mc_mean - calls.mean(axis=0)) <= 5 * mc_std * np.sqrt(2 / 200) + 1e-6).all()
    assert 0.8 < calls.std(axis=0).mean() / mc_std.mean() < 1.25


def test_resume_training_demo(capsys, tmp_path):
    module = load("resume_training")
    result = module.main(**module.FAST, directory=str(tmp_path))
    out = capsys.readouterr().out
    epochs = module.FAST["epochs"]
    half = epochs // 2
    assert (tmp_path / "middle.keras").exists() and (tmp_path / "resumed.keras").exists()
    # One row per epoch, those after the save trained in the fresh process.
    lines = out.splitlines()
    assert sum(line.endswith("  first") for line in lines) == half
    assert sum(line.endswith("  fresh") for line in lines) == epochs - half
    # The fresh process loaded the optimizer's update count ...
    assert result["steps_at_load"] == half * result["steps_per_epoch"]
    full = result["uninterrupted"]
    for key in module.KEYS:
        assert len(full[key]) == epochs
        assert result["first_half"][key] == pytest.approx(full[key][:half], rel=1e-6)
        # ... so its schedules logged what the uninterrupted run logged.
        assert result["second_half"][key] == pytest.approx(full[key][half:], rel=1e-6)
    rates = full["drop/rate"]
    assert all(a < b for a, b in zip(rates, rates[1:]))  # the schedule moved
    assert len(set(full["enet/l1"])) == epochs
    # The same weights, strengths and dropout seed state: the difference
    # measured in fast mode is 0 on each backend.
    assert result["max_weight_difference"] <= 1e-5 * max(result["max_weight"], 1.0)
    assert result["max_state_difference"] == 0.0
    accuracy = result["accuracy"]
    assert accuracy["interrupted"] == pytest.approx(accuracy["uninterrupted"], abs=1e-6)


def test_scheduled_weight_decay_demo(capsys):
    module = load("scheduled_weight_decay")
    results = module.main(**module.FAST)
    out = capsys.readouterr().out
    assert out.count("val_accuracy") == 3
    steps = module.FAST["epochs"] * (module.FAST["train_size"] // module.BATCH)
    cosine = results["decoupled cosine"]["history"]["weight_decay"]
    # Each epoch logs the value of its last update: the ramp 0.02 -> 0.2.
    expected = [0.2 - 0.18 * (1 + np.cos(np.pi * s / steps)) / 2
                for s in range(steps // module.FAST["epochs"] - 1, steps, steps // module.FAST["epochs"])]
    np.testing.assert_allclose(cosine, expected, rtol=1e-5)
    assert results["decoupled 0.1"]["history"]["weight_decay"] == [0.1] * module.FAST["epochs"]
    assert "weight_decay" not in results["L2 penalty"]["history"]
    assert all(r["history"]["val_accuracy"][-1] > 0.3 for r in results.values())


def test_prune_digits_demo(capsys):
    module = load("prune_digits")
    results = module.main(**module.FAST)
    out = capsys.readouterr().out
    assert set(results) == {"dense", "80%", "2:4"} and "zipped .keras" in out
    assert results["dense"]["sparsity"] == 0.0
    # 80% of every kernel's weights (per kernel, TF MOT's rounding), 2:4 half of them.
    assert results["80%"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert results["2:4"]["sparsity"] == 0.5
    assert results["80%"]["zipped_bytes"] < 0.5 * results["dense"]["zipped_bytes"]
    assert all(r["accuracy"] > 0.5 for r in results.values())
