"""keras_regx: regularization for Keras 3 on TensorFlow, JAX and PyTorch.

Regularizers whose strength can follow a schedule over training, the
schedules, the dropout family (`layers`: scheduled, Monte Carlo, DropConnect,
DropBlock, DropPath, Concrete), Monte Carlo prediction (`utils`), sparsity
measurement (`sparsity`), and the callbacks that drive schedules and log
sparsity inside compiled `fit()`.
"""

from keras_regx import callbacks
from keras_regx import layers
from keras_regx import regularizers
from keras_regx import schedules
from keras_regx import sparsity
from keras_regx import utils
from keras_regx.regularizers import L1
from keras_regx.regularizers import L2
from keras_regx.regularizers import ElasticNet
from keras_regx.version import __version__

__all__ = [
    "ElasticNet",
    "L1",
    "L2",
    "__version__",
    "callbacks",
    "layers",
    "regularizers",
    "schedules",
    "sparsity",
    "utils",
]
