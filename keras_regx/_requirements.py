"""Refuses to import where `keras` is Keras 2: keras_regx objects need Keras 3.

Imported first by `keras_regx/__init__.py`. Under Keras 2 (an old `keras`, or
`tf.keras` made Keras 2 by `TF_USE_LEGACY_KERAS`) keras_regx objects would
half work: constant penalties silently, schedules frozen at their first value,
callbacks failing deep inside `fit()`. One clear error at import is better.
"""

import os

import keras

_HOW = (
    'keras_regx needs Keras 3 (`pip install "keras>=3.6"`), with models built '
    "from `import keras`, not `tf.keras` or `tf_keras`."
)


def check_keras_3(version=None, environ=None):
    """Raises ImportError unless `keras` is Keras 3 and tf.keras is not Keras 2."""
    version = str(keras.__version__ if version is None else version)
    environ = os.environ if environ is None else environ
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < 3:
        raise ImportError(f"{_HOW} The installed `keras` is version {version}.")
    legacy = environ.get("TF_USE_LEGACY_KERAS", "")
    if legacy.strip().lower() in ("1", "true", "yes"):
        raise ImportError(
            f"{_HOW} TF_USE_LEGACY_KERAS={legacy} is set, so `tf.keras` is Keras 2 "
            "(tf_keras), whose layers and `fit()` cannot drive keras_regx objects: "
            "unset TF_USE_LEGACY_KERAS and build the model with `keras`."
        )


check_keras_3()
