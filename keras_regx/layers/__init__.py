"""The dropout family: scheduled, Monte Carlo, DropConnect, DropBlock, DropPath, Concrete."""

from keras_regx.layers.concrete_dropout import ConcreteDropout
from keras_regx.layers.drop_block import DropBlock1D
from keras_regx.layers.drop_block import DropBlock2D
from keras_regx.layers.drop_connect import DropConnectDense
from keras_regx.layers.drop_path import DropPath
from keras_regx.layers.drop_path import StochasticDepth
from keras_regx.layers.dropout import MCDropout
from keras_regx.layers.dropout import ScheduledDropout

__all__ = [
    "ConcreteDropout",
    "DropBlock1D",
    "DropBlock2D",
    "DropConnectDense",
    "DropPath",
    "MCDropout",
    "ScheduledDropout",
    "StochasticDepth",
]
