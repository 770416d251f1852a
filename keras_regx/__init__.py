"""keras_regx: regularization for Keras 3 on TensorFlow, JAX and PyTorch.

Regularizers whose strength can follow a schedule over training (and
proximal L1 / group lasso for exact zeros), the schedules, the dropout family
(`layers`: scheduled, Monte Carlo, DropConnect, DropBlock, DropPath,
Concrete), decoupled weight decay on a schedule for any optimizer
(`optimizers`), magnitude pruning (`pruning`), Monte Carlo prediction (`uncertainty`), adding
regularization to a built model (`utils`), sparsity measurement (`sparsity`),
the callbacks that drive schedules and log sparsity inside compiled `fit()`,
and plots of a training history (`plotting`).
"""

from keras_regx import _requirements  # first: refuses Keras 2 at import
from keras_regx import callbacks
from keras_regx import layers
from keras_regx import optimizers
from keras_regx import plotting
from keras_regx import pruning
from keras_regx import regularizers
from keras_regx import schedules
from keras_regx import sparsity
from keras_regx import uncertainty
from keras_regx import utils
from keras_regx.regularizers import ElasticNet
from keras_regx.regularizers import GroupLasso
from keras_regx.regularizers import L1
from keras_regx.regularizers import L2
from keras_regx.version import __version__

__all__ = [
    "ElasticNet",
    "GroupLasso",
    "L1",
    "L2",
    "__version__",
    "callbacks",
    "layers",
    "optimizers",
    "plotting",
    "pruning",
    "regularizers",
    "schedules",
    "sparsity",
    "uncertainty",
    "utils",
]

del _requirements  # imported for its check only
