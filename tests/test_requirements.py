"""keras_regx refuses to import under Keras 2 with one clear error."""

import os
import subprocess
import sys

import pytest

from keras_regx import _requirements


@pytest.mark.parametrize("version", ["2.15.0", "2.0", "", "unknown"])
def test_keras_2_is_refused(version):
    with pytest.raises(ImportError, match=r"needs Keras 3 .*keras>=3\.6.*version " + version):
        _requirements.check_keras_3(version, environ={})


@pytest.mark.parametrize("value", ["1", "True", "yes"])
def test_legacy_tf_keras_is_refused(value):
    with pytest.raises(ImportError, match=f"TF_USE_LEGACY_KERAS={value} is set.*unset"):
        _requirements.check_keras_3("3.15.1", environ={"TF_USE_LEGACY_KERAS": value})


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_keras_3_is_accepted(value):
    _requirements.check_keras_3("3.15.1", environ={"TF_USE_LEGACY_KERAS": value})


def test_import_fails_in_a_process_with_legacy_keras():
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    result = subprocess.run([sys.executable, "-c", "import keras_regx"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: keras_regx needs Keras 3"), last
