"""Every ```python block of README.md runs as written.

A block may be preceded by an HTML comment `<!-- setup: CODE -->` (invisible
on the rendered page) with the imports and data it assumes. To keep the suite
short each block runs on one backend, the backends taking turns in README
order; every backend's run covers its share. Error messages the README quotes
are checked against the real ones.
"""

import pathlib
import re

import keras
import pytest

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
BACKENDS = ("tensorflow", "jax", "torch")
_BLOCK = re.compile(r"(?:<!-- setup: (?P<setup>.*?) -->\n)?```python\n(?P<code>.*?)```", re.S)
BLOCKS = [(m.group("setup") or "", m.group("code")) for m in _BLOCK.finditer(README)]
MINE = [i for i in range(len(BLOCKS)) if BACKENDS[i % len(BACKENDS)] == keras.backend.backend()]


def test_readme_has_blocks_for_every_backend():
    assert len(BLOCKS) >= 2 * len(BACKENDS)


@pytest.mark.parametrize("index", MINE)
def test_readme_block_runs(index, tmp_path, monkeypatch):
    setup, code = BLOCKS[index]
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    exec(compile(setup, f"README.md setup {index}", "exec"), namespace)
    exec(compile(code, f"README.md block {index}", "exec"), namespace)


_QUOTED_ERROR = re.compile(r"`(kr\.[^`]+)` raises\s+``(\w+): (.*?)``", re.S)


@pytest.mark.parametrize("call,kind,message", _QUOTED_ERROR.findall(README))
def test_readme_error_messages_are_the_real_ones(call, kind, message):
    import keras_regx as kr

    with pytest.raises(Exception) as info:
        eval(call, {"kr": kr})
    assert type(info.value).__name__ == kind
    assert str(info.value) == " ".join(message.split())
