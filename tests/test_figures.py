"""symflow figures: quick run writes every file; finite-d curves approach d = inf."""

import argparse
import csv
import json
from collections import defaultdict

import numpy as np
import pytest

from symflow.apps import figures

_SAVED = {}  # image format -> matplotlib Figures saved in it, recorded by the quick fixture


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from matplotlib.figure import Figure

    out = tmp_path_factory.mktemp("figs")
    orig = Figure.savefig

    def spy(self, fname, *args, **kwargs):
        _SAVED[kwargs.get("format")] = _SAVED.get(kwargs.get("format"), []) + [self]
        return orig(self, fname, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", spy)
        # PNG only here (PDF rendering doubles the cost; test_formats_option covers formats)
        summary = figures.make_figures(out=out, quick=True, seed=0, progress=False, jobs=1,
                                       formats=["png"])
    return out, summary


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_all_files_written(quick):
    out, summary = quick
    for n in figures.FIGURES:
        for ext in ("png", "csv", "json"):
            p = out / f"fig{n}.{ext}"
            assert p.is_file() and p.stat().st_size > 0, p
        meta = json.loads((out / f"fig{n}.json").read_text())
        assert meta["figure"] == n and meta["seed"] == 0 and "version" in meta
        assert meta["wall_time_s"] > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_publication_ready_labels_legends_captions(quick):
    """Every panel has axis labels (mathtext), the figures their legends, and figN.json a
    caption; Fig. 1 explains its error bars; Fig. 2 right has the -4 gamma inset."""
    out, _ = quick
    figs = _SAVED["png"]
    assert len(figs) == 6 and "pdf" not in _SAVED and "svg" not in _SAVED
    for n, fig in zip(figures.FIGURES, figs):
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), (n, ax.get_title())
        assert any(ax.get_legend() is not None for ax in fig.axes), n
        meta = json.loads((out / f"fig{n}.json").read_text())
        assert len(meta["summary"]["caption"]) > 40 and meta["formats"] == ["png"]
    assert any("$" in ax.get_ylabel() for ax in figs[1].axes)  # mathtext
    legend1 = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    assert any("error bars: min-max" in t for t in legend1)
    assert "min-max" in json.loads((out / "fig1.json").read_text())["summary"]["error_bars"]
    fig2 = figs[1]
    assert len(fig2.axes) == 6  # phi_d and phi_d - phi_inf rows
    right = fig2.axes[2]
    assert right.child_axes and "4" in right.child_axes[0].get_title()
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert any("-4" in t or "4\\gamma" in t for t in labels)


def test_formats_option(tmp_path):
    s = figures.make_figures(figures=[6], out=tmp_path, quick=True, progress=False,
                             formats="svg,png")
    assert sorted(p.rsplit(".", 1)[1] for p in s[6]["files"]) == ["csv", "json", "png", "svg"]
    assert (tmp_path / "fig6.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="formats"):
        figures.make_figures(figures=[6], out=tmp_path / "x", formats=["gif"])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("n, q", [(2, "phi"), (3, "chi")])
def test_finite_d_approaches_limit(quick, n, q):
    """Mean over reps of max_gamma |q_d - q_inf| decreases with d, in every panel."""
    out, _ = quick
    rows = _read(out / f"fig{n}.csv")
    lim = defaultdict(list)
    runs = defaultdict(list)
    for r in rows:
        if r["d"] == "inf":
            lim[r["panel"]].append(float(r[q]))
        else:
            runs[(r["panel"], int(r["d"]), r["rep"])].append(float(r[q]))
    assert len(lim) == 3
    for panel, ref in lim.items():
        ref = np.array(ref)
        gaps = defaultdict(list)
        for (p, d, _), v in runs.items():
            if p == panel:
                gaps[d].append(np.max(np.abs(np.array(v) - ref)))
        ds = sorted(gaps)
        assert len(ds) >= 3
        mean_gap = [np.mean(gaps[d]) for d in ds]
        if q == "phi":  # O(1/d) drift dominates: strictly decreasing in d
            assert all(b < a for a, b in zip(mean_gap, mean_gap[1:])), (panel, ds, mean_gap)
        else:  # chi(0) fluctuates at small d: require a clear overall decrease
            assert mean_gap[-1] < 0.5 * mean_gap[0], (panel, ds, mean_gap)


def test_limit_chi_final_and_fig5_rates(quick):
    out, _ = quick
    rows = _read(out / "fig6.csv")
    for r in rows:
        a, s = float(r["alpha"]), float(r["alpha_star"])
        assert float(r["chi_inf"]) == pytest.approx(min(1.0, np.sqrt(a / s)))
    last = {r["panel"]: float(r["gap"]) for r in rows}
    assert all(0 <= v < 1e-3 for v in last.values())
    fits = json.loads((out / "fig5.json").read_text())["summary"]["fits"]
    # m* = m: late decay at rate about 4 mu; m* = m/2: L ~ 1/t^2 (medians over all runs)
    assert 0.9 < np.median([f["slope_over_minus_4mu"] for f in fits if f["panel"] == 1]) < 1.2
    assert -2.2 < np.median([f["loglog_slope"] for f in fits if f["panel"] == 0]) < -1.8


def test_seeds_deterministic():
    assert figures.instance_seed(0, 2, 1, 40, 3) == figures.instance_seed(0, 2, 1, 40, 3)
    assert figures.instance_seed(0, 2, 1, 40, 3) != figures.instance_seed(1, 2, 1, 40, 3)


@pytest.mark.parametrize("kwargs", [dict(figures=[9]), dict(figures=[]), dict(reps=0),
                                    dict(seed=-1), dict(jobs=0)])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        figures.make_figures(out=tmp_path, quick=True, progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_figure_one_line_error(tmp_path, capsys):
    from symflow.apps.cli import _Parser, build_parser, main

    parser = _Parser(prog="symflow")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    figures.add_cli(sub)
    args = parser.parse_args(["figures", "--figure", "9", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="1..6"):
        args.func(args)
    top = build_parser()
    subs = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    if "figures" in subs[0].choices:  # once the lead has registered add_cli
        assert main(["figures", "--figure", "9", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("symflow: error:")
