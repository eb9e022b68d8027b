"""Every python block of the docs can be pasted into the interactive interpreter (issue 11).

tests/test_docs.py runs each block as a file; the classic ``python`` prompt reads line by
line instead: a blank line ends an indented block (a later indented line is then an
IndentationError) and a compound statement must be followed by a blank line before the
next top-level statement.  Blocks are taken as a reader copies them from the rendered
page: the fence's own indentation (a block inside a list item) is removed, nothing else.
"""

from __future__ import annotations

import codeop
import warnings
from pathlib import Path

import pytest
from test_docs import _FENCE

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def paste_errors(code):
    """(line, message) of every line the interactive interpreter rejects."""
    buf, errors = [], []
    for i, line in enumerate(code.splitlines() + [""], 1):
        buf.append(line)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. invalid escape sequences
                done = codeop.compile_command("\n".join(buf), "<stdin>", "single")
        except SyntaxError as exc:  # IndentationError is a SyntaxError
            errors.append((i, f"{type(exc).__name__}: {exc.msg}"))
            buf = []
            continue
        if done is not None:
            buf = []
    return errors


def rendered_python_blocks(path):
    text = path.read_text(encoding="utf-8")
    for m in _FENCE.finditer(text):
        if m.group("info").strip().split()[:1] != ["python"]:
            continue
        ind = m.group("indent")
        body = "\n".join(ln[len(ind):] if ln.startswith(ind) else ln
                         for ln in m.group("body").splitlines())
        yield text.count("\n", 0, m.start("body")) + 1, body


def test_checker_catches_both_kinds():
    assert paste_errors("for i in range(2):\n    x = i\n\n    y = i\n")[0][1].startswith(
        "IndentationError")
    assert paste_errors("for i in range(2):\n    x = i\nprint(x)\n")
    assert not paste_errors("for i in range(2):\n    x = i\n\nprint(x)\n")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_python_blocks_paste_into_the_interpreter(path):
    bad = [f"{path.name}:{line + i - 1}: {msg}"
           for line, body in rendered_python_blocks(path) for i, msg in paste_errors(body)]
    assert not bad, bad
