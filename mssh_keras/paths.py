"""Paths in files written for users, and output folders checked before any long work.

Pure standard library (the TF-free runtime and the demo import it).

``portable_path``: nothing this project writes for others (model metadata, verification
reports, run configs, result tables, the demo's keypoint JSON) carries the absolute paths
of the machine that wrote it. A path inside the repository is stored relative to the
repository (``models/hg-lite-lspet/model.keras``), one next to it relative to the
repository too (``../shared/data/...``), one under the home folder as ``~/...``, and any
other as its bare file name.

``writable_dir``: a command that would run for minutes checks its output folder first
(it may be a file, lie under a file, or be read-only) and says so in one line.

``write_json_atomic``: the one way this project writes a JSON file (checkpoint pointers,
model metadata, reports, dataset source records, the demo's keypoints): a temporary file
in the same folder, then a rename, so a kill leaves the old file or the new one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class OutputDirError(ValueError):
    """An output folder that cannot be created or written, with the folder and the fix."""


def portable_path(path: str | os.PathLike | None, root: str | os.PathLike = REPO) -> str | None:
    """``path`` as it may appear in a file written for users (see the module docstring).

    Relative paths are taken relative to the current folder. The result uses ``/``.
    """
    if path is None:
        return None
    p = Path(os.path.abspath(os.fspath(path)))
    root = Path(os.path.abspath(os.fspath(root)))
    try:
        return p.relative_to(root).as_posix() or "."
    except ValueError:
        pass
    # A sibling of the repository (same top-level folder, e.g. /work/shared next to
    # /work/main): relative to the repository, as the docs write it.
    if len(root.parts) > 2 and p.parts[:2] == root.parts[:2]:
        return Path(os.path.relpath(p, root)).as_posix()
    home = Path(os.path.expanduser("~"))
    if home != Path(home.anchor):
        try:
            return "~/" + p.relative_to(home).as_posix()
        except ValueError:
            pass
    return p.name


def writable_dir(path: str | os.PathLike, what: str = "output folder",
                 flag: str | None = None) -> Path:
    """Create ``path`` if needed and prove it writable with a real probe file.

    Raises OutputDirError naming the folder (and ``flag``, e.g. ``--output-dir``) when it
    is a file, lies under a file, or cannot be written. ``os.access`` alone is not enough:
    it answers yes to root for a read-only folder, and no for some writable network mounts.
    """
    p = Path(path)
    name = f"{what} {p}" + (f" ({flag})" if flag else "")
    fix = f"choose another {flag or what}"
    if p.exists() and not p.is_dir():
        raise OutputDirError(f"{name} is a file, not a folder: {fix}")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputDirError(f"{name} lies under {parent}, which is a file: {fix}")
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe_", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise OutputDirError(f"{name} is not writable ({reason}): {fix}, or fix its "
                             f"permissions") from None
    return p


def write_json_atomic(path: str | os.PathLike, obj, *, indent: int | None = 2,
                      allow_nan: bool = True) -> Path:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename.

    A kill at any moment leaves either the previous file or the complete new one, never
    half a file. ``allow_nan=False`` refuses NaN/inf (strict JSON; convert them first, e.g.
    with ``mssh_keras.result_files.jsonable``). The parent folder must exist.
    """
    path = Path(path)
    text = json.dumps(obj, indent=indent, allow_nan=allow_nan) + "\n"
    # open() rather than mkstemp: the file gets the usual permissions (umask), not 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
