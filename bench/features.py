"""Feature-extraction throughput per backbone and batch size: `python bench/features.py`.

The same as `python -m bench features` (decode alone, network alone, end to end, and the share
of this CPU's matrix-multiply peak); prints a table and writes bench/results/features.json.
"""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.argv = [sys.argv[0], "features", *sys.argv[1:]]
runpy.run_module("bench", run_name="__main__")
