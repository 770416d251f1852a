"""The dropout family: scheduled, Monte Carlo, DropConnect, DropBlock, DropPath, Concrete."""

from keras_regx.layers.drop_connect import DropConnectDense
from keras_regx.layers.drop_path import DropPath
from keras_regx.layers.drop_path import StochasticDepth
from keras_regx.layers.dropout import MCDropout
from keras_regx.layers.dropout import ScheduledDropout

__all__ = [
    "DropConnectDense",
    "DropPath",
    "MCDropout",
    "ScheduledDropout",
    "StochasticDepth",
]
