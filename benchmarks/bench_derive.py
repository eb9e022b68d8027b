"""Benchmark of the derivation pipeline (issue 6).

Run: python benchmarks/bench_derive.py [--smoke]
(--smoke: only the import timings; the full derive is exercised by tests/test_derive.py)
- wall time of a full ``symflow derive`` into a temporary directory (goal < 60 s);
- ``import symflow`` and ``import symflow`` + first kernel use, each in a fresh
  interpreter, and whether sympy got imported (it must not).
"""

import argparse
import subprocess
import sys
import tempfile
import time


def fresh(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="import timings only")
    if ap.parse_args(argv).smoke:
        print("symflow derive: skipped (--smoke)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "symflow", "derive", "--out", tmp],
                           check=True, capture_output=True)
            print(f"symflow derive (all artefacts, fresh process): "
                  f"{time.perf_counter() - t0:.2f} s (goal < 60 s)")
    code = ("import time, sys; t = time.perf_counter(); import symflow{extra}; "
            "print(f'{{time.perf_counter() - t:.4f}} {{\"sympy\" in sys.modules}}')")
    for label, extra in (("import symflow", ""),
                         ("import symflow; symflow.risk (kernels loaded)", "; symflow.risk")):
        secs, sym = fresh(code.format(extra=extra)).split()
        print(f"{label}: {float(secs) * 1e3:.1f} ms, sympy imported: {sym}")


if __name__ == "__main__":
    main()
