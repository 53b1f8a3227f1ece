"""Run every benchmark: ``python -m bench`` (or ``make bench``)."""

from __future__ import annotations

import runpy
import sys

for module in ("bench.bench_pipeline", "bench.bench_analytics"):
    print(f"== {module}", flush=True)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__")
