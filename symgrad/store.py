"""Where symgrad keeps files: the cache folder, "committed or cached" code, atomic writes.

Every file symgrad writes for the user (checkpoints, metrics, caches, rendered code, compiled
libraries) goes through ``write_atomic``: a reader, or a run killed half-way, sees the old
file or the new one, never a torn one.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import Callable, IO

import numpy as np


def cache_root() -> Path:
    """``$SYMGRAD_CACHE``, else ``~/.cache/symgrad``."""
    root = os.environ.get("SYMGRAD_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "symgrad"


def cache_dir(kind: str) -> Path:
    """The cache folder for one kind of file: "generated", "cuda-host", "fsdd", ..."""
    return cache_root() / kind


def repository_generated() -> Path:
    """The checkout's committed ``generated/`` folder (absent in an installed package)."""
    return Path(__file__).resolve().parent.parent / "generated"


def write_atomic(path, write: Callable[[IO], None] | str | bytes, binary: bool = False) -> Path:
    """Write ``path`` through a temporary file in the same folder and a rename.

    write: the text or bytes to write, or a function that writes to the open file (opened in
    binary mode when ``binary``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(write, (str, bytes)):
        content, binary = write, isinstance(write, bytes)
        write = lambda handle: handle.write(content)  # noqa: E731
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file next to ``path``, created as ``open`` creates files: mode 0666 less the
    umask (``tempfile.mkstemp`` would make it 0600, and the rename would keep that)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_if_changed(path, text: str) -> Path:
    """Write ``text`` atomically unless the file already holds exactly it (keeps its mtime)."""
    path = Path(path)
    if not (path.is_file() and path.read_text() == text):
        write_atomic(path, text)
    return path


def write_json(path, value) -> Path:
    return write_atomic(path, lambda handle: json.dump(value, handle, indent=2))


def write_npz(path, arrays: dict, compressed: bool = False) -> Path:
    save = np.savez_compressed if compressed else np.savez
    return write_atomic(path, lambda handle: save(handle, **arrays), binary=True)


class NotNpz(ValueError):
    """A file that is not a readable .npz archive; the message says why, in a few words."""


def read_npz(path) -> dict:
    """Every array of an .npz archive, loaded without pickles.

    Raises FileNotFoundError, or NotNpz saying what the file is instead (a single .npy
    array, text, a truncated or corrupt archive), so each caller can name its file's role.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            magic = handle.read(6)
        raise NotNpz("a single .npy array, not an .npz archive of named arrays" if magic == b"\x93NUMPY"
                     else "not an .npz archive" if magic else "empty, not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise NotNpz(f"a corrupt .npz archive ({type(err).__name__}: {err})") from None


def digest(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def committed_or_cached(model_name: str, filename: str, text: str) -> Path:
    """The committed ``generated/<model>/<filename>`` when it holds exactly ``text``; otherwise
    a copy in the cache, in a folder named by the model and a hash of the text."""
    committed = repository_generated() / model_name / filename
    if committed.is_file() and committed.read_text() == text:
        return committed
    return write_if_changed(cache_dir("generated") / f"{model_name}-{digest(text)}" / filename, text)
