"""`benchmarks/run_all.py` rewrites RESULTS.md: the sections it generates
replace theirs, the ones written by hand stay."""

import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def _run_all():
    path = os.path.join(HERE, os.pardir, "benchmarks", "run_all.py")
    spec = importlib.util.spec_from_file_location("run_all", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_rerun_keeps_the_sections_written_by_hand():
    existing = """# Benchmark results

Old run, old machine.

## Regularizer step time (`bench_regularizers.py`)

old table

### What is left to gain

old floor

## Magnitude pruning (`bench_pruning.py`, 2026-11-30)

written by hand

## Import time (`bench_import.py`, 2026-11-29)

old import

## Reading these numbers (2026-11-27)

notes

## Measurements behind the code

more notes
"""
    generated = """# Benchmark results

New run, new machine.

## Regularizer step time (`bench_regularizers.py`)

new table

### What is left to gain

new floor

## A new benchmark (`bench_new.py`)

new section

## Import time (`bench_import.py`)

new import
"""
    merged = _run_all().merged(existing, generated)
    assert merged == """# Benchmark results

New run, new machine.

## Regularizer step time (`bench_regularizers.py`)

new table

### What is left to gain

new floor

## Magnitude pruning (`bench_pruning.py`, 2026-11-30)

written by hand

## Import time (`bench_import.py`)

new import

## A new benchmark (`bench_new.py`)

new section

## Reading these numbers (2026-11-27)

notes

## Measurements behind the code

more notes
"""


def test_every_section_of_results_md_survives_a_rerun_of_its_own_text():
    module = _run_all()
    with open(module.RESULTS) as f:
        text = f.read()
    assert module.merged(text, text) == text
