"""Time `import keras_regx` adds on top of `import keras`.

For the backend in KERAS_BACKEND, runs fresh Python processes that import
Keras alone and Keras then keras_regx, interleaved (`_timing`, one warm-up
run of each for the file cache), and reports the median wall time of each
and their difference.

    KERAS_BACKEND=jax python benchmarks/bench_import.py [--reps 7]
"""

import json
import subprocess
import sys

from _timing import header
from _timing import interleaved
from _timing import medians
from _timing import run_from_command_line

STATEMENTS = {"keras": "import keras", "keras + keras_regx": "import keras, keras_regx"}


def main(reps):
    def run(statement):
        return lambda: subprocess.run([sys.executable, "-c", statement], check=True)

    times = interleaved({name: run(s) for name, s in STATEMENTS.items()}, reps)
    median = medians(times)
    result = {
        **header(reps),
        "median_ms": {k: round(v * 1e3, 1) for k, v in median.items()},
        "added_ms": round((median["keras + keras_regx"] - median["keras"]) * 1e3, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=7)
