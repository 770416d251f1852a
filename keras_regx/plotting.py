"""Plots of a training history: losses, metrics, scheduled strengths, sparsity.

`plot_history` reads what `fit()` logged (a `keras.callbacks.History`, a dict
of per-epoch values, or a `keras.callbacks.CSVLogger` file) and draws one
panel per group of keys, all sharing the epoch axis:

- `"loss"`: every key containing `loss` (`loss`, `regularization_loss`,
  `<output>_loss`, ...);
- one panel per other metric (`accuracy`, `mae`, ...);
- `"strengths"`: the penalty strengths `RegularizationDriver` logs as
  `"<object name>/<argument>"` (`enet/l1`, `group/factor`);
- `"rates"`: the drop rates it logs (`"<layer name>/rate"`);
- `"learning rate"`: `learning_rate`;
- `"sparsity"`: what `SparsityMonitor` logs, `sparsity`, `sparsity/<layer>`,
  `sparsity/<layer>/units` and `sparsity/<layer>/inputs`, on a [0, 1] axis.

A `val_` key is drawn dashed, in the colour of its training counterpart and in
the same panel. The figure is a plain `matplotlib.figure.Figure`, made without
pyplot: no GUI backend and no global figure state are involved, so it works in
scripts, notebooks (it displays as the cell's value) and tests alike. Save it
with `fig.savefig("history.png")`.

matplotlib is an optional dependency: `pip install "keras_regx[plot]"`.
"""

import collections.abc
import csv
import os
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:  # matplotlib is optional: imported when a plot is drawn
    from matplotlib.figure import Figure

__all__ = [
    "plot_history",
]

_INSTALL = 'pip install "keras_regx[plot]"'
_MISSING = ("", "NA")  # cells CSVLogger writes for a key absent from the logs
_LOSS = ("loss",)
_STRENGTHS = ("strengths",)
_RATES = ("rates",)
_LEARNING_RATE = ("learning rate",)
_SCHEDULED = (_STRENGTHS, _RATES, _LEARNING_RATE)
# Panels of scheduled values switch to a log scale when their positive values
# span this ratio or more (a strength decaying 1e-3 -> 1e-5 would lie flat
# at 0 on a linear axis).
_DECADES = 100.0
_SPARSITY = ("sparsity",)
_SPARSITY_KINDS = {"units": "--", "inputs": ":"}


def _import_matplotlib():
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as err:
        raise ImportError(
            "`keras_regx.plotting.plot_history` needs matplotlib, which could not "
            f"be imported ({err}). Install it with: {_INSTALL}"
        ) from err
    return Figure, MaxNLocator


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _history_type_error(history):
    return TypeError(
        "Invalid value for argument `history`: expected a "
        "`keras.callbacks.History`, a dict {key: list of per-epoch values} or "
        "the path (str or os.PathLike) of a `keras.callbacks.CSVLogger` file. "
        f"Received: history={_short(history)} (of type {type(history).__name__})"
    )


def _as_series(key, values):
    """The per-epoch values of `key` as a float64 array."""
    if not isinstance(key, str):
        raise TypeError(
            "Invalid value for argument `history`: expected string keys. "
            f"Received: key {_short(key)} (of type {type(key).__name__})"
        )
    if isinstance(values, (str, bytes)) or not isinstance(values, collections.abc.Iterable):
        raise TypeError(
            "Invalid value for argument `history`: expected a list of per-epoch "
            f"numbers for key {key!r}. Received: {key!r}: {_short(values)}"
        )
    try:
        return np.array([float(v) for v in values], dtype="float64")
    except (TypeError, ValueError) as err:
        raise TypeError(
            "Invalid value for argument `history`: expected a list of per-epoch "
            f"numbers for key {key!r}. Received: {key!r}: {_short(values)} ({err})"
        ) from None


def _csv_cell(path, line, column, cell):
    """The number in a CSV cell; None for a cell CSVLogger marks as missing."""
    if cell is None or cell.strip() in _MISSING:
        return None
    try:
        return float(cell)
    except ValueError:
        raise ValueError(
            f"Invalid value for argument `history`: expected numbers in the CSV "
            f"file {os.fspath(path)!r}. Received: {cell!r} in column {column!r}, line {line}"
        ) from None


def _read_csv(path):
    """(epochs, {column: values}) of a CSVLogger file."""
    with open(path, newline="") as f:
        header = f.readline()
        # CSVLogger writes "epoch" first, then its separator (`separator=`).
        after = header[5:6] if header.startswith("epoch") else ""
        delimiter = after if after not in ("", "\r", "\n") else ","
        f.seek(0)
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = {name: [] for name in reader.fieldnames or ()}
        for row in reader:
            for name, values in columns.items():
                values.append(_csv_cell(path, reader.line_num, name, row.get(name)))
    epochs = columns.pop("epoch", None)
    if epochs is not None:
        epochs = [np.nan if e is None else e for e in epochs]
    # Without validation data CSVLogger still adds a `val_` column for every
    # key, `NA` in every row: such columns hold nothing to draw.
    series = {
        name: np.array([np.nan if v is None else v for v in values], dtype="float64")
        for name, values in columns.items()
        if not values or any(v is not None for v in values)
    }
    return epochs, series


def _read_history(history):
    """(x, {key: values}): 1-based epoch numbers and the per-epoch series."""
    if isinstance(history, keras.callbacks.History):
        series = {k: _as_series(k, v) for k, v in history.history.items()}
        epochs = list(getattr(history, "epoch", None) or ())
        n = max((len(v) for v in series.values()), default=0)
        if len(epochs) != n:  # a History filled by hand, or shared by fits
            epochs = None
    elif isinstance(history, collections.abc.Mapping):
        series = {k: _as_series(k, v) for k, v in history.items()}
        epochs = series.pop("epoch", None)
    elif isinstance(history, (str, os.PathLike)):
        epochs, series = _read_csv(history)
    else:
        raise _history_type_error(history)
    n = max((len(v) for v in series.values()), default=0)
    if n == 0:
        raise ValueError(
            "Invalid value for argument `history`: expected at least one epoch "
            "of logged values (was `fit()` run?). Received: an empty history "
            f"with keys {sorted(series)}"
        )
    if epochs is None:
        x = np.arange(1.0, n + 1.0)
    else:
        x = np.asarray(epochs, dtype="float64") + 1.0
    return x, series


def _select(keys, available):
    """The keys to draw: `keys` and their `val_` counterparts, in order."""
    if keys is None:
        return list(available)
    if not isinstance(keys, (list, tuple)):
        raise TypeError(
            "Invalid value for argument `keys`: expected None or a list or tuple "
            f"of history keys. Received: keys={_short(keys)} (of type "
            f"{type(keys).__name__})"
        )
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(
                "Invalid value for argument `keys`: expected history keys "
                f"(strings). Received: {_short(key)} (of type {type(key).__name__}) "
                f"in keys={_short(keys)}"
            )
    if not keys:
        raise ValueError(
            "Invalid value for argument `keys`: expected at least one key, or "
            f"None for all of them. Received: keys={keys!r}"
        )
    unknown = [key for key in keys if key not in available]
    if unknown:
        raise ValueError(
            f"Invalid value for argument `keys`: {unknown} not in the history. "
            f"Expected keys among {list(available)}. Received: keys={keys!r}"
        )
    chosen = []
    for key in keys:
        for name in (key, "val_" + key):
            if name in available and name not in chosen:
                chosen.append(name)
    return chosen


def _base(key):
    return key[4:] if key.startswith("val_") and len(key) > 4 else key


def _group(key):
    """The panel of `key`: `_LOSS`, `("metric", name)`, one of `_SCHEDULED` or `_SPARSITY`."""
    base = _base(key)
    if base == "sparsity" or base.startswith("sparsity/"):
        return _SPARSITY
    if base == "learning_rate":
        return _LEARNING_RATE
    if base.endswith("/rate"):
        return _RATES
    if "/" in base or base == "weight_decay":
        return _STRENGTHS
    if "loss" in base:
        return _LOSS
    return ("metric", base)


def _style(group, key, colours):
    """Colour and line style of `key` within its panel.

    `colours` maps a line family to its colour and grows as families appear.
    A `val_` key shares the colour of its training key; in the sparsity panel
    a layer's unit and input figures share the colour of the layer.
    """
    base = _base(key)
    linestyle = "--" if base != key else "-"
    if group == _SPARSITY:
        if base == "sparsity":
            return {"color": "black", "linestyle": linestyle, "linewidth": 2.0}
        parts = base.split("/")
        if len(parts) == 3 and parts[2] in _SPARSITY_KINDS:
            base = "/".join(parts[:2])
            linestyle = _SPARSITY_KINDS[parts[2]]
    if base not in colours:
        colours[base] = f"C{len(colours) % 10}"
    return {"color": colours[base], "linestyle": linestyle}


def _scale(ax, values):
    """A log y scale where the positive values span `_DECADES` or more.

    Zeros (a schedule that starts at 0) stay visible: the scale is then
    symmetric-log, linear below the smallest positive value.
    """
    values = np.concatenate([np.asarray(v, "float64").ravel() for v in values])
    values = values[np.isfinite(values)]
    positive = values[values > 0]
    if positive.size == 0 or (values < 0).any() or positive.max() < _DECADES * positive.min():
        return
    if (values == 0).any():
        ax.set_yscale("symlog", linthresh=float(positive.min()))
    else:
        ax.set_yscale("log")


def plot_history(
    history: "keras.callbacks.History | Mapping[str, Sequence[float]] | str | os.PathLike",
    keys: Sequence[str] | None = None,
) -> "Figure":
    """Draws a training history: one panel per group of keys, epochs on x.

    Panels, top to bottom, each present when it has keys to draw:

    - `"loss"`: every key containing `loss` (`loss`, `regularization_loss`, ...);
    - one panel per other metric, titled with its name (`accuracy`, ...);
    - `"strengths"`: penalty strengths `"<name>/<argument>"` logged by
      `RegularizationDriver` (`enet/l1`, `group/factor`), and the
      `"weight_decay"` of a `kr.optimizers.ScheduledWeightDecay`;
    - `"rates"`: drop rates `"<layer name>/rate"` it logs;
    - `"learning rate"`: `learning_rate`;
    - `"sparsity"`: `sparsity` (black), `sparsity/<layer>` (solid),
      `sparsity/<layer>/units` (dashed) and `sparsity/<layer>/inputs`
      (dotted) logged by `SparsityMonitor`; the y axis spans [0, 1].

    A `val_` key is dashed, in the colour of its training key and in its
    panel. Panels of metrics and the lines of a panel are in the order of
    their keys' names (CSVLogger's order), so a `History` and its CSVLogger
    file give the same figure. Each line is labelled with its key in the
    panel's legend and holds the logged values as they are: NaN leaves a gap,
    infinities are drawn off the axis, neither raises. A panel of scheduled
    values whose positive values span two decades or more gets a log y axis
    (symmetric-log, linear near 0, when some value is 0), so a strength that
    decays by orders of magnitude does not lie flat at 0.

    The x axis is the 1-based epoch: `epoch + 1` for Keras' 0-based epoch
    index (a `History`'s `.epoch`, the `epoch` column of a CSVLogger file or
    an `"epoch"` key of a dict), so a `fit(..., initial_epoch=2)` starts at
    3; `1, 2, ..., n` when the history carries no epoch index.

    Args:
        history: the training history, one of:
            - a `keras.callbacks.History` (what `fit()` returns);
            - a dict `{key: list of per-epoch values}`, e.g. `history.history`;
            - the path (str or `os.PathLike`) of a `keras.callbacks.CSVLogger`
              file, any separator; `NA` and empty cells read as NaN, and
              columns that are `NA` throughout (CSVLogger adds a `val_`
              column per key when `fit()` has no validation data) are left out.
            Every key drawn must have one value per epoch (a `History` from
            `fit(validation_freq=k)` with k > 1 has fewer validation values:
            pad them with NaN in a dict).
        keys: None (all keys), or a list or tuple of the keys to draw; the
            `val_` counterpart of a chosen key is drawn with it.

    Returns:
        A `matplotlib.figure.Figure` (constrained layout), one `Axes` per
        panel in `fig.axes`, titled `"loss"`, the metric's name,
        `"strengths"`, `"rates"`, `"learning rate"` or `"sparsity"`.

    Raises:
        ImportError: matplotlib is not installed (`pip install "keras_regx[plot]"`).
        TypeError: `history` or `keys` is of the wrong type, or a key's values
            are not numbers.
        ValueError: an empty history, an unknown key in `keys`, or a key
            without one value per epoch.

    Example:
    ```python
    >>> history = {"loss": [1.0, 0.6, 0.5], "val_loss": [1.1, 0.8, 0.7],
    ...            "accuracy": [0.5, 0.7, 0.8], "enet/l1": [0.0, 5e-4, 1e-3],
    ...            "sparsity": [0.0, 0.2, 0.4], "sparsity/dense": [0.0, 0.25, 0.5]}
    >>> fig = kr.plotting.plot_history(history)
    >>> [ax.get_title() for ax in fig.axes]
    ['loss', 'accuracy', 'strengths', 'sparsity']
    >>> [(line.get_label(), line.get_linestyle()) for line in fig.axes[0].get_lines()]
    [('loss', '-'), ('val_loss', '--')]
    >>> fig.axes[0].get_lines()[1].get_ydata().tolist()
    [1.1, 0.8, 0.7]
    >>> fig = kr.plotting.plot_history(history, keys=["loss", "sparsity"])
    >>> [ax.get_title() for ax in fig.axes]
    ['loss', 'sparsity']
    >>> # fig.savefig("history.png") writes it to a file
    ```
    """
    Figure, MaxNLocator = _import_matplotlib()
    x, series = _read_history(history)
    chosen = _select(keys, series)
    for key in chosen:
        if len(series[key]) != len(x):
            raise ValueError(
                "Invalid value for argument `history`: expected one value per "
                f"epoch for every key, {len(x)} epochs. Received: {len(series[key])} "
                f"values for key {key!r} (from `fit(validation_freq=k)`? Pad the "
                "missing epochs with NaN, or leave the key out with `keys=`)"
            )

    # In key order, as CSVLogger writes them, so that a History and its CSV
    # file give the same figure; a training key comes before its `val_` key.
    chosen.sort(key=lambda k: (_base(k), k != _base(k)))
    panels = {}
    for key in chosen:
        panels.setdefault(_group(key), []).append(key)
    order = sorted(
        panels,
        key=lambda g: {_LOSS: 0, _STRENGTHS: 2, _RATES: 3, _LEARNING_RATE: 4,
                       _SPARSITY: 5}.get(g, 1),
    )

    fig = Figure(figsize=(8.0, 1.0 + 2.4 * len(order)), layout="constrained")
    axes = fig.subplots(len(order), 1, sharex=True, squeeze=False)[:, 0]
    marker = "o" if len(x) <= 30 else None  # a short run is a few points
    for ax, group in zip(axes, order):
        colours = {}
        for key in panels[group]:
            ax.plot(x, series[key], label=key, marker=marker, markersize=3,
                    **_style(group, key, colours))
        if group == _LOSS:
            title, ylabel = "loss", "loss"
        elif group in _SCHEDULED:
            title, ylabel = group[0], "value"
            _scale(ax, [series[key] for key in panels[group]])
        elif group == _SPARSITY:
            title, ylabel = "sparsity", "fraction of zeros"
            ax.set_ylim(-0.03, 1.03)  # [0, 1], lines at 0 or 1 kept off the frame
        else:
            title = ylabel = group[1]
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # Outside the axes, so it never hides a line; "best" can be slow.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes[-1].set_xlabel("epoch")
    return fig
