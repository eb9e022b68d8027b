"""Parameter sweeps: a grid of ``limit`` or ``simulate`` jobs on Dask, as an xarray.Dataset.

Where things are:

- ``spec.py``: the sweep spec (TOML or dict): job, fixed parameters, grid axes;
  validation (``load_spec``).
- ``jobs.py``: what one task computes (a batch of cells; runs on a Dask worker).
- ``scheduler.py``: ``sweep()``: cells -> tasks -> Dask -> cache (resume) -> dataset.
- ``dataset.py``: the xarray.Dataset, its summaries, netCDF output, the phase plot.
- ``cli.py``: ``symflow sweep``.

Nothing here imports dask or xarray until a sweep runs.  See docs/sweeps.md.
"""

from symflow.apps.sweep.dataset import plot_phase
from symflow.apps.sweep.scheduler import sweep
from symflow.apps.sweep.spec import Spec, load_spec

__all__ = ["sweep", "load_spec", "Spec", "plot_phase"]
