"""Progress display of long solver runs (``simulate(..., progress=True)``, ``symflow run``).

On a terminal: a tqdm bar (after ``DELAY`` seconds, so short runs show nothing).
Otherwise (a log file, a pipe, a batch job): no carriage returns, but one plain line at
most every ``INTERVAL`` seconds once the run has lasted ``DELAY`` seconds, and a last
line when it ends (only if a line was printed).  Progress counts in the unit the caller
gave: gamma = t / d when the times were given as ``gamma``, the flow time t otherwise.
"""

from __future__ import annotations

import sys
import time

__all__ = ["make_progress", "LineProgress", "DELAY", "INTERVAL"]

DELAY = 1.0  # seconds before anything is shown
INTERVAL = 10.0  # seconds between two lines of the non-terminal display


class LineProgress:
    """Line-per-update progress for a non-terminal stream.

    Parameters
    ----------
    total : float
        Final value of the counter (in ``unit``).
    unit : str
        Name of the counter ("gamma" or "t").
    file : text stream
        Where lines go (default ``sys.stderr`` at construction).
    delay, interval : float, optional
        Seconds before the first line and between two lines (default: the module's
        ``DELAY`` and ``INTERVAL``).
    desc : str
        Prefix of each line.
    """

    def __init__(self, total, unit="t", file=None, delay=None, interval=None,
                 desc="symflow"):
        self.total, self.unit, self.desc = float(total), unit, desc
        self.file = sys.stderr if file is None else file
        self.delay = float(DELAY if delay is None else delay)
        self.interval = float(INTERVAL if interval is None else interval)
        self.n = 0.0
        self.start = time.monotonic()
        self.last = None  # time of the last line printed

    def _line(self, now, note=""):
        pct = 100.0 * self.n / self.total if self.total > 0 else 100.0
        print(f"{self.desc}: {self.unit}={self.n:.4g}/{self.total:.4g} ({pct:3.0f}%), "
              f"{now - self.start:.1f} s elapsed{note}", file=self.file, flush=True)
        self.last = now

    def update(self, n):
        """Advance the counter by ``n`` (in ``unit``); print a line if one is due."""
        self.n += n
        now = time.monotonic()
        if now - self.start >= self.delay and (self.last is None
                                               or now - self.last >= self.interval):
            self._line(now)

    def close(self):
        """Print the final line if any line was printed before."""
        if self.last is not None:
            self._line(time.monotonic(), ", done")


def make_progress(total, unit="t", scale=1.0, file=None):
    """A progress display for a run to ``total`` (in ``unit``).

    Parameters
    ----------
    total : float
        Final value of the counter, in ``unit``.
    unit : str
        "gamma" or "t".
    scale : float
        Solver time per unit of the counter (d for gamma, 1 for t); stored as
        ``.scale`` on the returned object for the caller's conversion.
    file : text stream, optional
        Default ``sys.stderr``.

    Returns
    -------
    tqdm or LineProgress
        A tqdm bar when ``file`` is a terminal, else a :class:`LineProgress`; both have
        ``update(n)``, ``close()`` and ``scale``.
    """
    file = sys.stderr if file is None else file
    try:
        tty = file.isatty()
    except (AttributeError, ValueError):  # closed or unusual streams
        tty = False
    if tty:
        from tqdm.auto import tqdm

        bar = tqdm(total=float(total), delay=DELAY, unit=unit, leave=False, file=file,
                   bar_format="{l_bar}{bar}| " + unit + "={n:.3g}/{total:.3g} "
                   "[{elapsed}<{remaining}]")
    else:
        bar = LineProgress(total, unit=unit, file=file)
    bar.scale = float(scale)
    return bar
