"""Progress display: counts in the caller's unit (gamma or t); plain lines, no carriage
returns, when stderr is not a terminal (issue 11).  No test depends on timing: the
delay and interval are set to 0."""

import io

import numpy as np
import pytest

from symflow import _progress
from symflow.numerics.init import gaussian
from symflow.numerics.simulators import simulate


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def immediate(monkeypatch):
    monkeypatch.setattr(_progress, "DELAY", 0.0)
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)


def _run(gamma=None, t=None):
    W0, Ws = gaussian(8, 3, seed=0), gaussian(8, 2, seed=1)
    return simulate(W0, Ws, t=t, gamma=gamma, method="overlaps", progress=True)


def test_log_gets_lines_in_gamma_without_carriage_returns(immediate, capsys):
    _run(gamma=[0.0, 0.5, 2.0])
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) >= 2 and all(ln.startswith("symflow: gamma=") for ln in lines)
    assert lines[-1].endswith("done") and "gamma=2/2 (100%)" in lines[-1]


def test_time_unit_when_the_caller_gave_t(immediate, capsys):
    _run(t=[0.0, 4.0])
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and all(ln.startswith("symflow: t=") for ln in lines)
    assert "t=4/4 (100%)" in lines[-1]


def test_short_runs_print_nothing_to_a_log(capsys):
    bar = _progress.LineProgress(10.0, unit="gamma", delay=3600.0)
    bar.update(10.0)
    bar.close()
    assert capsys.readouterr().err == ""


def test_line_interval_limits_the_output():
    buf = io.StringIO()
    bar = _progress.LineProgress(100.0, unit="gamma", file=buf, delay=0.0, interval=3600.0)
    for _ in range(100):
        bar.update(1.0)
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and "gamma=1/100" in lines[0] and "gamma=100/100" in lines[1]


def test_terminal_gets_a_tqdm_bar_in_gamma(immediate):
    buf = _Terminal()
    bar = _progress.make_progress(10.0, unit="gamma", scale=40.0, file=buf)
    assert bar.scale == 40.0 and not isinstance(bar, _progress.LineProgress)
    bar.update(10.0)
    assert bar.n == 10.0
    bar.close()
    assert "| gamma=0/10" in buf.getvalue()  # the bar's first frame, in gamma


def test_progress_does_not_change_results():
    W0, Ws = gaussian(8, 3, seed=0), gaussian(8, 2, seed=1)
    a = simulate(W0, Ws, gamma=[0.0, 1.0], method="overlaps", progress=True)
    b = simulate(W0, Ws, gamma=[0.0, 1.0], method="overlaps")
    assert np.array_equal(a.phi, b.phi)
