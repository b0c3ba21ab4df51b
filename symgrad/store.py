"""Where symgrad keeps files: the cache folder, "committed or cached" code, atomic writes.

Every file symgrad writes for the user (checkpoints, metrics, caches, rendered code, compiled
libraries) goes through ``write_atomic``: a reader, or a run killed half-way, sees the old
file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Callable, IO

import numpy as np

from .errors import UserError


def cache_root() -> Path:
    """``$SYMGRAD_CACHE``, else ``~/.cache/symgrad``."""
    root = os.environ.get("SYMGRAD_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "symgrad"


def cache_dir(kind: str) -> Path:
    """The cache folder for one kind of file: "generated", "cuda-host", "fsdd", ..."""
    return cache_root() / kind


SHARED_CACHE = "SYMGRAD_CACHE_SHARED"  # "1": trust a cache folder that others can write to


def code_cache(kind: str, name: str) -> Path:
    """The folder ``name`` of the cache ``kind`` of code symgrad runs ("generated", "numba",
    "cuda-host"), made if missing, private to the user (mode 0700).

    Whoever can write to it can make symgrad run their code, so where the cache folder, the
    ``kind`` folder or this one is another user's, or others can write to it, it is refused
    with a UserError, unless $SYMGRAD_CACHE_SHARED=1 says to trust them (then folders are
    made as the umask says, for the others to share).
    """
    shared = os.environ.get(SHARED_CACHE) == "1"
    root = cache_root()
    root.parent.mkdir(parents=True, exist_ok=True)
    for folder in (root, root / kind, root / kind / name):
        folder.mkdir(mode=0o777 if shared else 0o700, exist_ok=True)
        if not shared:
            _refuse_unless_private(folder)
    return folder


def _refuse_unless_private(folder: Path):
    """A UserError where ``folder`` is not the user's (nor root's), or others can write to it."""
    info = folder.stat()
    if info.st_uid not in (os.getuid(), 0):
        problem = f"owned by another user (uid {info.st_uid})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    else:
        return
    raise UserError(f"the cache folder {folder} is {problem}, and symgrad runs code it finds there: "
                    f"make it private (chmod 700), set SYMGRAD_CACHE to a folder of your own, or set "
                    f"{SHARED_CACHE}=1 to trust everyone who can write to it")


def repository_generated() -> Path:
    """The checkout's committed ``generated/`` folder (absent in an installed package)."""
    return Path(__file__).resolve().parent.parent / "generated"


def write_atomic(path, write: Callable[[IO], None] | str | bytes, binary: bool = False) -> Path:
    """Write ``path`` through a temporary file in the same folder and a rename.

    write: the text or bytes to write, or a function that writes to the open file (opened in
    binary mode when ``binary``). The new file keeps the mode of the file it replaces; a
    symlink at ``path`` is replaced, never written through. Temporaries of ``path`` that dead
    writers left behind are removed first. A failure to write raises OSError naming ``path``
    (not its temporary), and symgrad's cache when the file is in it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(write, (str, bytes)):
        content, binary = write, isinstance(write, bytes)
        write = lambda handle: handle.write(content)  # noqa: E731
    remove_stale_temporaries(path.parent, path.name)
    try:
        fd, tmp = _create_temporary(path)
    except OSError as err:
        raise _naming(err, path) from None
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            _keep_mode(handle.fileno(), path)
            write(handle)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, path) from err
        raise
    return path


def _keep_mode(fd: int, path: Path):
    """Give the temporary ``fd`` the mode of the regular file at ``path``, if there is one (a
    file the user made private stays private)."""
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(existing.st_mode):
        os.fchmod(fd, stat.S_IMODE(existing.st_mode))


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` (a full disk says "No space left on device" and names no file) as an OSError of
    the same kind naming ``path``, and blaming symgrad's cache when ``path`` is in it."""
    reason = err.strerror or str(err)
    if _in_cache(path):
        reason += " (writing symgrad's cache; set $SYMGRAD_CACHE to use another folder)"
    return OSError(err.errno, reason, str(path))


def _in_cache(path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(cache_root().resolve())
    except (OSError, RuntimeError):  # no home folder: then no cache there either
        return False


# A temporary names its writer, ``.NAME.PID@HOST.TOKEN.tmp``, so that one a killed writer left
# behind can be told from one a live writer (here, or on another machine sharing the folder)
# is still filling.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname().split(".")[0])[:32]
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]*)\.[0-9a-f]{8}\.tmp")


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file next to ``path``, created as ``open`` creates files: mode 0666 less the
    umask (``tempfile.mkstemp`` would make it 0600, and the rename would keep that)."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}@{_HOST}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary of ``write_atomic``'s."""
    return _TEMPORARY.fullmatch(name) is not None


def remove_stale_temporaries(folder, name: str | None = None) -> list[Path]:
    """Remove the temporaries in ``folder`` (of the file ``name`` only, when given) whose
    writer, a process on this machine, is dead: what a run killed during a write leaves.
    A live process's temporary, or another machine's, is never touched."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        found = _TEMPORARY.fullmatch(entry.name)
        if (found and found["host"] == _HOST and name in (None, found["name"])
                and not _alive(int(found["pid"]))):
            try:
                os.unlink(entry.path)
            except OSError:  # gone already, or not ours to remove: it harms nothing
                continue
            removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class LockHeld(Exception):
    """Another live process holds the lock; ``holder`` is what it wrote in the lock file
    ("PID@HOST", or "" if it has not written it yet)."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


class FileLock:
    """An exclusive lock on the file ``path`` (created if missing, never through a symlink),
    held until ``release``, which removes the file, or the process's death: the kernel drops
    the lock of a process that dies, however it dies, so the lock file a killed run leaves
    behind is simply taken over. A POSIX record lock (the kind NFS supports), it belongs to the
    process: a process never blocks itself. The holder writes "PID@HOST" in the file, for the
    message of a process it refuses.

    Raises LockHeld where another live process holds it, OSError where the file system
    cannot lock (its errno is then ENOLCK, EOPNOTSUPP or ENOSYS).
    """

    def __init__(self, path):
        self.path, self._fd = Path(path), None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = os.read(fd, 200).decode(errors="replace").strip() if err.errno in (
                    errno.EACCES, errno.EAGAIN) else None
                os.close(fd)
                if holder is None:
                    raise
                raise LockHeld(holder) from None
            if self._still_at_path(fd):
                break
            os.close(fd)  # its holder removed it as we opened it: lock the file there now
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}@{_HOST}\n".encode())
        except OSError as err:  # a full disk
            self.release()
            raise _naming(err, self.path) from err

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.lstat(self.path))
        except FileNotFoundError:
            return False

    def release(self):
        """Remove the lock file and drop the lock (in that order, so that nobody locks a file
        that is no longer there)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter exit os may be gone; the kernel drops the lock anyway
            pass


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


def code_name(model_name: str, text: str) -> str:
    """The name of the cache folders of one text of a model's generated code."""
    return f"{model_name}-{digest(text)}"


def committed_or_cached(model_name: str, filename: str, text: str) -> Path:
    """The committed ``generated/<model>/<filename>`` when it holds exactly ``text``; otherwise
    a copy in the cache, in a folder named by the model and a hash of the text."""
    committed = repository_generated() / model_name / filename
    if committed.is_file() and committed.read_text() == text:
        return committed
    return write_if_changed(code_cache("generated", code_name(model_name, text)) / filename, text)


class Manifest:
    """The files symgrad wrote into one folder of the code cache, with their SHA-256 in its
    ``manifest.json``. A file is loaded only while it matches: one damaged, replaced or put
    there by anything else is dropped, with a warning naming it, for its user to rebuild.
    Reads and writes hold the folder's lock (the ranks of an MPI job compile the same kernels
    at once), so no reader sees a file before its hash."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def read(self, name: str) -> bytes | None:
        """The bytes of the file ``name`` as symgrad wrote them, or None: missing, or dropped."""
        path = self.folder / name
        with self._locked():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return None
            if self._hashes().get(name) == hashlib.sha256(data).hexdigest():
                return data
            with contextlib.suppress(OSError):
                path.unlink()
        warnings.warn(f"dropped {path} from symgrad's cache: it is not the file symgrad wrote there "
                      "(damaged or replaced); rebuilding it", stacklevel=2)
        return None

    def write(self, name: str, data: bytes) -> Path:
        """Write the file ``name`` (atomically) and record its hash."""
        path = self.folder / name
        with self._locked():
            write_atomic(path, data)
            try:
                write_json(self.folder / "manifest.json",
                           {**self._hashes(), name: hashlib.sha256(data).hexdigest()})
            except BaseException:
                path.unlink(missing_ok=True)  # unrecorded, it would only be dropped
                raise
        return path

    def _hashes(self) -> dict:
        """The recorded hashes; none where the manifest is missing or damaged (its files are
        then dropped as they are read)."""
        try:
            hashes = json.loads((self.folder / "manifest.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return hashes if isinstance(hashes, dict) else {}

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits for the holder; the kernel frees it if it dies
            yield
        finally:
            os.close(fd)
