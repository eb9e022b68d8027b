"""What one task of a sweep computes: a batch of cells of one job (runs on a Dask worker).

``limit`` cells of a task are solved as one vectorised ``symflow.limit`` call (per
(rtol, method) group); ``simulate`` cells run one after the other through
:func:`symflow.apps.run.simulate_instance`, the computation of ``symflow run``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["run_task", "VARIABLES"]

# time-dependent variables of each job, in the order they are stored
VARIABLES = {"limit": ("phi", "chi"), "simulate": ("phi", "chi", "risk")}


def run_task(job, gamma, cells):
    """Compute one task.

    Parameters
    ----------
    job : {"limit", "simulate"}
    gamma : ndarray (n,)
        Output times in gamma = t / d.
    cells : list of dict
        Validated parameters of each cell (``Spec.cells()``), k cells.

    Returns
    -------
    dict
        ``VARIABLES[job]`` -> float arrays (k, n); ``nfev`` int array (k,) (right-hand
        side evaluations; for ``limit`` those of the vectorised solve the cell was part
        of, -1 where the method does not report them); ``wall_time_s`` float array (k,)
        (likewise shared by a limit batch); ``method`` str array (k,), the solver used;
        ``version``: the symflow version that computed it (0-d str array).

    Raises
    ------
    ValueError, RuntimeError
        From ``symflow.limit`` / ``symflow.simulate``.
    """
    gamma = np.asarray(gamma, dtype=float)
    k, n = len(cells), gamma.size
    out = {name: np.empty((k, n)) for name in VARIABLES[job]}
    out.update(nfev=np.full(k, -1, dtype=np.int64), wall_time_s=np.zeros(k),
               method=np.empty(k, dtype=object))
    if job == "limit":
        _limit(gamma, cells, out)
    elif job == "simulate":
        _simulate(gamma, cells, out)
    else:
        raise ValueError(f"job must be 'limit' or 'simulate', got {job!r}")
    out["method"] = out["method"].astype(str)
    from symflow import __version__

    out["version"] = np.array(__version__)  # checked by the scheduler: no mixed versions
    return out


def _limit(gamma, cells, out):
    from symflow.numerics.highdim import limit

    groups = {}
    for i, c in enumerate(cells):
        groups.setdefault((c["rtol"], c["method"]), []).append(i)
    for (rtol, method), idx in groups.items():
        tr = limit(np.array([cells[i]["alpha"] for i in idx]),
                   np.array([cells[i]["alpha_star"] for i in idx]), gamma, rtol=rtol,
                   method=method)
        out["phi"][idx], out["chi"][idx] = tr.phi, tr.chi
        out["nfev"][idx] = tr.meta["nfev"]
        out["wall_time_s"][idx] = tr.meta["wall_time_s"]
        out["method"][idx] = tr.meta["method"]


def _simulate(gamma, cells, out):
    from symflow.apps.run import simulate_instance

    for i, c in enumerate(cells):
        tr = simulate_instance(
            c["d"], c["m"], c["m_star"], gamma, init=c["init"], teacher=c["teacher"],
            seed=c["seed"], method=c["method"], rtol=c["rtol"],
            activation=c.get("activation"), teacher_activation=c.get("teacher_activation"),
            noise=c["noise"], weight_decay=c["weight_decay"], lr=c.get("lr"))
        for name in VARIABLES["simulate"]:
            out[name][i] = getattr(tr, name)
        out["nfev"][i] = tr.meta.get("nfev", -1)
        out["wall_time_s"][i] = tr.meta["wall_time_s"]
        out["method"][i] = tr.meta["method"]
