"""Every benchmark script keeps running (issue 14): a smoke run of each at tiny sizes in
the default tier, the full scripts in the slow tier (``python -m pytest -m slow``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmarks_are_found():
    assert len(BENCHMARKS) >= 8, BENCHMARKS


def test_every_benchmark_runs_in_smoke_mode(capsys):
    """``main(["--smoke"])`` of each script, in this process (a few seconds in total)."""
    for path in BENCHMARKS:
        mod = _load(path)
        mod.main(["--smoke"])
        out = capsys.readouterr().out
        assert out.strip(), f"{path.name} printed nothing"
        assert "nan" not in out.lower().replace("nanny", ""), f"{path.name}: NaN\n{out}"


@pytest.mark.slow
@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_script_runs(path):
    """The full benchmark as CI's slow tier runs it: ``python benchmarks/NAME.py``."""
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()
