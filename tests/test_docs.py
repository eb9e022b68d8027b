"""The documentation is executable: every ```python block of docs/*.md runs as-is.

Blocks of one file run in order in one namespace (later blocks may use names defined by
earlier ones), with the working directory set to a temporary directory.  Blocks that are
shown but not run use another fence (```bash, ```text).  Also checked: the signatures
written in docs/api.md match the code, and relative links between docs resolve.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC_FILES = sorted(DOCS.glob("*.md"))
CORE = ("index.md", "installation.md", "quickstart.md", "usage.md", "api.md",
        "mathematics.md", "adding_a_model.md")
# linked before they exist (written by another part of the project)
PENDING_LINKS = {"figures.md"}

# a fence may be indented (inside a list item); its body is dedented before running
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)"
                    r"^(?P=indent)(?P=fence)[ \t]*$", re.S | re.M)


def fenced_blocks(text):
    """(info string, first line number of the body, dedented body) of every fenced block."""
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body")) + 1
        out.append((m.group("info").strip(), line, textwrap.dedent(m.group("body"))))
    return out


def python_blocks(path):
    return [(line, body) for info, line, body in fenced_blocks(path.read_text(encoding="utf-8"))
            if info.split()[:1] == ["python"]]


def test_core_docs_exist_and_have_examples():
    names = {p.name for p in DOC_FILES}
    missing = [n for n in CORE if n not in names]
    assert not missing, f"missing docs: {missing}"
    for name in ("installation.md", "quickstart.md", "usage.md", "adding_a_model.md"):
        assert python_blocks(DOCS / name), f"{name} has no ```python example"


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_python_fences_are_runnable_kind(path):
    """Only ```python blocks run; catch look-alikes (```py, ```python3) that would not."""
    for info, line, _ in fenced_blocks(path.read_text(encoding="utf-8")):
        tag = info.split()[0] if info else ""
        assert tag not in ("py", "python3", "Python", "pycon"), \
            f"{path.name}:{line}: use ```python (executed) or ```text (shown only), not ```{tag}"


@pytest.mark.parametrize("path", [p for p in DOC_FILES if python_blocks(p)],
                         ids=lambda p: p.name)
def test_doc_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ns = {"__name__": f"docs_{path.stem}"}
    for i, (line, code) in enumerate(python_blocks(path), 1):
        where = f"{path.name}, python block {i} (line {line})"
        try:
            exec(compile(code, f"<{where}>", "exec"), ns)
        except Exception as exc:
            pytest.fail(f"{where} failed: {type(exc).__name__}: {exc}\n"
                        f"{traceback.format_exc()}", pytrace=False)


# ------------------------------------------------------------------ api.md signatures
_SIG = re.compile(r"^#{3,4} `(?P<path>[\w.]+)\((?P<params>.*)\)`\s*$", re.M)


def _resolve(dotted):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _documented(params):
    """[(name, kind, default source or None)] from a documented parameter list."""
    fn = ast.parse(f"def _f({params}): pass").body[0].args
    out = []
    pos = fn.posonlyargs + fn.args
    defaults = [None] * (len(pos) - len(fn.defaults)) + list(fn.defaults)
    for a, dflt in zip(pos, defaults):
        out.append((a.arg, "positional", dflt))
    if fn.vararg:
        out.append((fn.vararg.arg, "*args", None))
    for a, dflt in zip(fn.kwonlyargs, fn.kw_defaults):
        out.append((a.arg, "keyword", dflt))
    if fn.kwarg:
        out.append((fn.kwarg.arg, "**kwargs", None))
    return out


def _actual(obj):
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "positional",
             inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.VAR_POSITIONAL: "*args",
             inspect.Parameter.KEYWORD_ONLY: "keyword",
             inspect.Parameter.VAR_KEYWORD: "**kwargs"}
    sig = inspect.signature(obj)
    return [(n, kinds[p.kind], p.default) for n, p in sig.parameters.items()
            if n != "self"]


def api_signatures():
    api = DOCS / "api.md"
    text = api.read_text(encoding="utf-8") if api.exists() else ""
    return [(m.group("path"), m.group("params")) for m in _SIG.finditer(text)]


def test_api_md_documents_every_export():
    import symflow

    documented = {p.rsplit(".", 1)[-1] for p, _ in api_signatures()}
    missing = [n for n in symflow.__all__ if n not in documented and n != "init"]
    assert not missing, f"api.md does not document {missing}"


@pytest.mark.parametrize("dotted,params", api_signatures(), ids=lambda v: str(v)[:40])
def test_api_md_signatures_match_code(dotted, params):
    obj = _resolve(dotted)
    doc = _documented(params)
    act = _actual(obj)
    assert [(n, k) for n, k, _ in doc] == [(n, k) for n, k, _ in act], \
        f"api.md: {dotted}({params}) vs code {inspect.signature(obj)}"
    for (name, _, dnode), (_, _, dval) in zip(doc, act):
        has_default = dval is not inspect.Parameter.empty
        assert (dnode is not None) == has_default, f"{dotted}: default of {name!r}"
        if dnode is None:
            continue
        try:
            literal = ast.literal_eval(dnode)
        except ValueError:
            continue  # a symbolic default (e.g. ROOT, dict()) is shown by name
        assert literal == dval, f"{dotted}: default of {name!r} is {dval!r}, api.md {literal!r}"


# ------------------------------------------------------------------------- links
_LINK = re.compile(r"\]\((?P<target>[^)#\s]*)(?:#(?P<anchor>[^)\s]*))?\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(?P<title>.+?)[ \t]*$", re.M)


def _slug(title):
    """GitHub-style anchor of a heading."""
    title = title.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def _anchors(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(m.group("title")) for m in _HEADING.finditer(text)}


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    bad = []
    for m in _LINK.finditer(path.read_text(encoding="utf-8")):
        target, anchor = m.group("target"), m.group("anchor")
        if "://" in target or target.startswith("mailto:") or target in PENDING_LINKS:
            continue
        dest = (path.parent / target) if target else path
        if not dest.exists():
            bad.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}#{anchor}")
    assert not bad, f"{path.name}: broken links {bad}"


# ------------------------------------------- regression: exports are not shadowed
def test_symflow_limit_and_simulate_are_the_functions():
    """Regression: symflow.limit / symflow.simulate once resolved to their submodules."""
    code = ("import symflow.numerics.highdim, symflow.numerics.simulators, "
            "symflow.apps.check, symflow; "
            "assert callable(symflow.limit) and callable(symflow.simulate); "
            "assert symflow.limit.__module__ == 'symflow.numerics.highdim'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
