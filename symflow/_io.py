"""Atomic file output: write to a temporary file in the target directory, then rename.

A failure (or interruption) never leaves a partially written file at ``path``; the
final file gets the usual mode (0666 & ~umask), not mkstemp's 0600.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path, write):
    """Call ``write(tmp_path)`` to fill a temporary file, then move it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8, ``\\n`` newlines) to ``path`` atomically."""
    def w(tmp):
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    atomic_write(path, w)


def atomic_write_many(writers):
    """Write a set of files together: ``writers`` maps path -> write(tmp_path).

    Every file is first written to its temporary file; only when all succeeded are they
    renamed into place (so an error or interruption leaves either none of the new files
    or, at worst during the final renames, a subset of complete files; temporary files
    are always removed).
    """
    umask = os.umask(0)
    os.umask(umask)
    tmps = {}
    try:
        for path, write in writers.items():
            path = Path(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            tmps[path] = tmp
            write(tmp)
            os.chmod(tmp, 0o666 & ~umask)
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
