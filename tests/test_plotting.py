import io
import math
import sys

import keras
import numpy as np
import pytest

import keras_regx as kr
from keras_regx import plotting
from keras_regx import regularizers
from keras_regx import schedules
from keras_regx.callbacks import RegularizationScheduler
from keras_regx.callbacks import SparsityMonitor

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPOCHS = 3

# Every kind of key fit() logs with our callbacks, in a deliberately unsorted order.
LOGS = {
    "loss": [1.0, 0.5, 0.25],
    "mae": [0.9, 0.6, 0.4],
    "accuracy": [0.5, 0.7, 0.8],
    "regularization_loss": [0.1, 0.2, 0.3],
    "enet/l1": [0.0, 5e-4, 1e-3],
    "drop/rate": [0.0, 0.1, 0.2],
    "learning_rate": [0.01, 0.01, 0.005],
    "sparsity": [0.0, 0.2, 0.4],
    "sparsity/dense": [0.0, 0.25, 0.5],
    "sparsity/dense/units": [0.0, 0.0, 0.5],
    "sparsity/dense/inputs": [0.0, 0.25, 0.25],
    "sparsity/head": [0.0, 0.0, 0.1],
    "val_loss": [1.2, 0.7, 0.5],
    "val_accuracy": [0.4, 0.6, 0.7],
    "val_mae": [1.0, 0.7, 0.6],
}


def lines(fig):
    """{label: (panel title, xdata, ydata, colour, linestyle)} of every line."""
    found = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            assert line.get_label() not in found, line.get_label()
            found[line.get_label()] = (
                ax.get_title(),
                np.asarray(line.get_xdata(), "float64"),
                np.asarray(line.get_ydata(), "float64"),
                line.get_color(),
                line.get_linestyle(),
            )
    return found


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


def render(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny fit with scheduled strengths, sparsity and validation data.

    Returns its History and the CSVLogger files of the same fit, one with the
    default separator and one with `;`.
    """
    keras.utils.set_random_seed(0)
    tmp = tmp_path_factory.mktemp("fit")
    comma, semicolon = tmp / "log.csv", tmp / "log_semicolon.csv"
    ramp = schedules.Linear(0.0, 1e-2, end_step=2 * EPOCHS)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, kernel_regularizer=regularizers.ElasticNet(ramp, 1e-3, name="enet"),
                           name="hidden"),
        kr.layers.ScheduledDropout(schedules.Linear(0.0, 0.3, end_step=2 * EPOCHS), seed=1,
                                   name="drop"),
        keras.layers.Dense(1, name="head"),
    ])
    model.compile(keras.optimizers.SGD(0.01), "mse", metrics=["mae"])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    history = model.fit(
        x, y, batch_size=4, epochs=EPOCHS, verbose=0, validation_data=(x, y),
        callbacks=[RegularizationScheduler(), SparsityMonitor(structured=True),
                   keras.callbacks.CSVLogger(str(comma)),
                   keras.callbacks.CSVLogger(str(semicolon), separator=";")],
    )
    return history, comma, semicolon


def test_fit_history_saves_a_png(fitted, tmp_path):
    history, _, _ = fitted
    fig = plotting.plot_history(history)
    path = tmp_path / "history.png"
    fig.savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000


def test_fit_history_lines_equal_the_logged_values(fitted):
    history, _, _ = fitted
    logged = history.history
    assert {"enet/l1", "drop/rate", "sparsity/hidden/units", "sparsity/head/inputs",
            "val_loss", "val_mae"} <= set(logged)
    fig = plotting.plot_history(history)
    assert titles(fig) == ["loss", "mae", "strengths", "rates", "sparsity"]
    drawn = lines(fig)
    assert set(drawn) == set(logged)  # every key, exactly once
    for key, (_, x, y, _, _) in drawn.items():
        np.testing.assert_array_equal(x, np.arange(1, EPOCHS + 1), err_msg=key)
        np.testing.assert_array_equal(y, logged[key], err_msg=key)
    assert drawn["val_loss"][0] == drawn["loss"][0] == "loss"
    assert drawn["val_mae"][0] == "mae"
    assert drawn["enet/l1"][0] == "strengths" and drawn["drop/rate"][0] == "rates"
    assert drawn["sparsity/hidden/units"][0] == "sparsity"
    assert fig.axes[-1].get_xlabel() == "epoch"


def test_groups_styles_and_legends():
    fig = plotting.plot_history(LOGS)
    assert titles(fig) == ["loss", "accuracy", "mae", "strengths", "rates", "learning rate",
                           "sparsity"]
    drawn = lines(fig)
    panels = {}
    for key, (title, *_) in drawn.items():
        panels.setdefault(title, []).append(key)
    assert panels == {
        "loss": ["loss", "val_loss", "regularization_loss"],
        "accuracy": ["accuracy", "val_accuracy"],
        "mae": ["mae", "val_mae"],
        "strengths": ["enet/l1"],
        "rates": ["drop/rate"],
        "learning rate": ["learning_rate"],
        "sparsity": ["sparsity", "sparsity/dense", "sparsity/dense/inputs",
                     "sparsity/dense/units", "sparsity/head"],
    }
    colour, style = {k: v[3] for k, v in drawn.items()}, {k: v[4] for k, v in drawn.items()}
    for key in ("loss", "accuracy", "mae"):
        assert style[key] == "-" and style["val_" + key] == "--"
        assert colour[key] == colour["val_" + key]
    assert colour["loss"] != colour["regularization_loss"]
    assert style["sparsity/dense/units"] == "--" and style["sparsity/dense/inputs"] == ":"
    assert colour["sparsity/dense/units"] == colour["sparsity/dense"]
    assert colour["sparsity/head"] != colour["sparsity/dense"]
    for ax in fig.axes:
        assert ax.get_ylabel()
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == panels[ax.get_title()]
    low, high = fig.axes[-1].get_ylim()
    assert low <= 0.0 and high >= 1.0 and high - low < 1.1
    assert render(fig).startswith(PNG_MAGIC)


@pytest.mark.parametrize("which", [1, 2])
@pytest.mark.parametrize("as_str", [False, True])
def test_csv_logger_file_gives_the_same_lines(fitted, which, as_str):
    history, path = fitted[0], fitted[which]
    expected = lines(plotting.plot_history(history))
    fig = plotting.plot_history(str(path) if as_str else path)
    got = lines(fig)
    assert set(got) == set(expected)  # CSVLogger's `NA` columns are left out
    for key, (title, x, y, colour, style) in expected.items():
        assert got[key][0] == title and got[key][3:] == (colour, style), key
        np.testing.assert_array_equal(got[key][1], x, err_msg=key)
        np.testing.assert_allclose(got[key][2], y, rtol=1e-12, err_msg=key)
    assert titles(fig) == titles(plotting.plot_history(history))


def test_csv_logger_without_validation_drops_na_columns(tmp_path):
    path = tmp_path / "log.csv"
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="head")])
    model.compile("sgd", "mse")
    history = model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=2, verbose=0,
                        callbacks=[SparsityMonitor(), keras.callbacks.CSVLogger(str(path))])
    assert "val_loss" in path.read_text().splitlines()[0]  # CSVLogger's padding
    assert set(lines(plotting.plot_history(path))) == set(history.history)


def test_csv_missing_and_special_cells(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,val_loss,sparsity\n"
                    "0,1.0,NA,0.0\n1,nan,0.5,\n2,inf,NA,-inf\n3,0.25,0.5,1.0\n")
    drawn = lines(plotting.plot_history(path))
    np.testing.assert_array_equal(drawn["loss"][1], [1, 2, 3, 4])
    np.testing.assert_array_equal(drawn["loss"][2], [1.0, np.nan, np.inf, 0.25])
    np.testing.assert_array_equal(drawn["val_loss"][2], [np.nan, 0.5, np.nan, 0.5])
    np.testing.assert_array_equal(drawn["sparsity"][2], [0.0, np.nan, -np.inf, 1.0])
    path.write_text('epoch,loss\n0,1.0\n1,"[1, 2]"\n')
    with pytest.raises(ValueError, match=r"expected numbers.*'\[1, 2\]'.*'loss'"):
        plotting.plot_history(path)


def test_nan_and_inf_values_do_not_crash():
    logs = {
        "loss": [1.0, math.nan, math.inf, 0.5],
        "val_loss": [math.nan] * 4,
        "mae": [-math.inf, 1.0, math.nan, 2.0],
        "enet/l1": [math.nan] * 4,
        "sparsity": [math.nan, 0.0, math.inf, 1.0],
    }
    fig = plotting.plot_history(logs)
    assert render(fig).startswith(PNG_MAGIC)
    drawn = lines(fig)
    for key, values in logs.items():
        np.testing.assert_array_equal(drawn[key][2], values, err_msg=key)
    fig = plotting.plot_history({"loss": [math.nan]})  # one epoch, nothing finite
    assert render(fig).startswith(PNG_MAGIC)


def test_epoch_axis_is_one_based():
    history = keras.callbacks.History()
    history.history = {"loss": [3.0, 2.0]}
    history.epoch = [2, 3]  # fit(..., initial_epoch=2)
    np.testing.assert_array_equal(lines(plotting.plot_history(history))["loss"][1], [3, 4])
    history.epoch = [0]  # not one index per value: numbered 1..n
    np.testing.assert_array_equal(lines(plotting.plot_history(history))["loss"][1], [1, 2])
    drawn = lines(plotting.plot_history({"epoch": [5, 6], "loss": [1.0, 0.5]}))
    assert set(drawn) == {"loss"}
    np.testing.assert_array_equal(drawn["loss"][1], [6, 7])


def test_keys_selects_panels_with_val_counterparts():
    fig = plotting.plot_history(LOGS, keys=["loss"])
    assert titles(fig) == ["loss"]
    assert set(lines(fig)) == {"loss", "val_loss"}
    fig = plotting.plot_history(LOGS, keys=("sparsity/dense/units", "mae", "enet/l1"))
    assert titles(fig) == ["mae", "strengths", "sparsity"]
    assert set(lines(fig)) == {"mae", "val_mae", "enet/l1", "sparsity/dense/units"}
    fig = plotting.plot_history(LOGS, keys=["val_loss", "val_loss"])
    assert set(lines(fig)) == {"val_loss"}
    assert lines(fig)["val_loss"][4] == "--"


def test_keys_errors():
    with pytest.raises(ValueError, match=r"\['nope'\] not in the history.*'enet/l1'"):
        plotting.plot_history(LOGS, keys=["loss", "nope"])
    with pytest.raises(ValueError, match="not in the history"):
        plotting.plot_history({"epoch": [0], "loss": [1.0]}, keys=["epoch"])
    with pytest.raises(ValueError, match="at least one key"):
        plotting.plot_history(LOGS, keys=[])
    with pytest.raises(TypeError, match=r"`keys`.*list or tuple.*Received: keys='loss'"):
        plotting.plot_history(LOGS, keys="loss")
    with pytest.raises(TypeError, match=r"`keys`.*strings.*Received: 1"):
        plotting.plot_history(LOGS, keys=["loss", 1])


@pytest.mark.parametrize("history", [None, 3, [1.0, 2.0], b"log.csv", np.ones(3)])
def test_wrong_history_type(history):
    with pytest.raises(TypeError, match=r"argument `history`: expected .*History.*dict"
                                        r".*CSVLogger.*Received: history="):
        plotting.plot_history(history)


@pytest.mark.parametrize("history,match", [
    ({"loss": 3.0}, "list of per-epoch numbers for key 'loss'"),
    ({"loss": "abc"}, "list of per-epoch numbers for key 'loss'"),
    ({"loss": [1.0, "a"]}, "list of per-epoch numbers for key 'loss'"),
    ({"loss": [[1.0, 2.0]]}, "list of per-epoch numbers for key 'loss'"),
    ({1: [1.0]}, "string keys"),
])
def test_bad_values(history, match):
    with pytest.raises(TypeError, match=match):
        plotting.plot_history(history)


def test_values_must_cover_every_epoch():
    with pytest.raises(ValueError, match=r"one value per epoch.*3 epochs.*1 values for key "
                                         r"'val_loss'.*NaN"):
        plotting.plot_history({"loss": [1.0, 0.5, 0.25], "val_loss": [0.5]})
    # A key left out is not checked.
    fig = plotting.plot_history({"loss": [1.0, 0.5, 0.25], "mae_short": [0.5]}, keys=["loss"])
    assert titles(fig) == ["loss"]


def test_empty_history(tmp_path):
    empty_file, header_only = tmp_path / "empty.csv", tmp_path / "header.csv"
    empty_file.write_text("")
    header_only.write_text("epoch,loss\n")
    for history in ({}, {"loss": []}, {"epoch": []}, keras.callbacks.History(),
                    empty_file, header_only):
        with pytest.raises(ValueError, match="empty history"):
            plotting.plot_history(history)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'matplotlib.*pip install "keras_regx\[plot\]"'):
        plotting.plot_history({"loss": [1.0]})


def test_no_pyplot_state():
    plotting.plot_history(LOGS)
    if "matplotlib.pyplot" in sys.modules:  # imported by someone else: no figure of ours
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


@pytest.mark.parametrize("values,scale", [
    ([1e-3, 1e-4, 1e-5], "log"),          # decays by two decades: log
    ([0.0, 1e-3, 1e-5], "symlog"),        # ... from 0: symmetric-log, 0 shown
    ([1e-3, 5e-4, 2e-4], "linear"),       # within a decade: linear
    ([0.0, 0.0, 0.0], "linear"),
    ([np.nan, 1e-3, np.inf], "linear"),
])
def test_scheduled_values_spanning_decades_get_a_log_axis(values, scale):
    fig = plotting.plot_history({"loss": [1.0, 0.5, 0.2], "enet/l1": values,
                                 "drop/rate": [0.1, 0.2, 0.3]})
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert axes["strengths"].get_yscale() == scale
    assert axes["rates"].get_yscale() == "linear" and axes["loss"].get_yscale() == "linear"
    if scale == "symlog":
        assert axes["strengths"].yaxis.get_transform().linthresh == pytest.approx(1e-5)
