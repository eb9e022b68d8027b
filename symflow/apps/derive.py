"""The derivation pipeline: every derived artefact, rebuilt by ``symflow derive``.

Each entry of :data:`ENTRIES` is a function returning ``{relative_path: text}``; the
pipeline runs them in order (moments -> risk -> gradient -> overlap ODEs -> exact
reduction -> limit system) and writes generated kernel modules, derivation notes and
a manifest.  Adding a model variant is one more entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from symflow._io import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]


def _model_entry(spec):
    def build():
        from symflow.codegen import render_model_module
        from symflow.derivation.model import derive_blocks, derive_sgd_blocks

        blocks = derive_blocks(spec)
        sgd = derive_sgd_blocks(spec)
        return {f"symflow/generated/{spec.name}_{be}.py":
                render_model_module(spec, blocks, be, sgd=sgd) for be in ("numpy", "mpmath")}
    build.__name__ = f"model_{spec.name}"
    return build


def _limit_entry():
    from symflow.codegen import render_scalar_module
    from symflow.derivation import wachter

    ks = wachter.kernels()
    title = "Closed forms of the high-dimensional limit (Wachter law, MATH.md section 6)"
    return {f"symflow/generated/limit_{be}.py": render_scalar_module(title, ks, be)
            for be in ("numpy", "mpmath")}


def _activations_entry():
    from symflow.derivation.activations_report import activations_md

    return {"derivations/08_activations.md": activations_md()}


def _reports_entry():
    from symflow.derivation.report import reports

    return reports()


def entries():
    """Ordered list of (name, builder) derivation entries.

    Moments -> risk -> gradient -> overlap ODEs (model kernels), limit closed forms, and
    the markdown reports of every step.  A new model variant is one more
    ``_model_entry(ModelSpec(...))`` here.
    """
    from symflow.derivation.model import PAPER_MODEL

    return [("quadratic_model", _model_entry(PAPER_MODEL)), ("limit", _limit_entry),
            ("reports", _reports_entry), ("activations", _activations_entry)]


def build_all():
    """Run every derivation entry; returns ``{relative_path: text}`` (deterministic)."""
    out = {"symflow/generated/__init__.py": '"""Generated kernels (symflow derive)."""\n'}
    for _name, build in entries():
        out.update(build())
    return out


def manifest(artefacts):
    """Manifest of the derived artefacts.

    Parameters
    ----------
    artefacts : dict
        Relative path -> text.

    Returns
    -------
    str
        JSON with a sha256 per artefact and the sympy version (sorted keys).
    """
    import sympy

    data = {"generator": "symflow derive", "sympy": sympy.__version__,
            "artefacts": {p: hashlib.sha256(t.encode()).hexdigest()
                          for p, t in sorted(artefacts.items())}}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _atomic_write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_all(root=ROOT):
    """Run every derivation and write the artefacts and the manifest.

    Parameters
    ----------
    root : path-like
        Directory under which ``derivations/`` and ``symflow/generated/`` are written
        (default: the source tree).

    Returns
    -------
    list of str
        Relative paths written (sorted).
    """
    arts = build_all()
    arts["derivations/manifest.json"] = manifest(arts)
    for rel, text in sorted(arts.items()):
        _atomic_write(Path(root) / rel, text)
    return sorted(arts)


def check(root=ROOT):
    """Compare the artefacts under ``root`` with a fresh derivation.

    Parameters
    ----------
    root : path-like
        Tree to check (default: the source tree).

    Returns
    -------
    list of str
        Relative paths whose content differs or is missing (empty: fresh).

    The manifest is compared on its artefact hashes only (not on the sympy version it
    records), so an unchanged output under another sympy version is still fresh.
    """
    arts = build_all()
    stale = []
    for rel, text in sorted(arts.items()):
        p = Path(root) / rel
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            stale.append(rel)
    mpath = Path(root) / "derivations/manifest.json"
    try:
        committed = json.loads(mpath.read_text(encoding="utf-8"))["artefacts"]
    except (OSError, ValueError, KeyError):
        committed = None
    if committed != json.loads(manifest(arts))["artefacts"]:
        stale.append("derivations/manifest.json")
    return stale
