"""Writing files so that a crash never leaves a half-written one behind, paths as results record
them, and a folder held by one process at a time."""

import contextlib
import fcntl
import importlib.util
import os
import socket
import tempfile
from typing import Iterator, Optional, Union


def package_folder(name: str) -> Optional[str]:
    """Where an installed package's files are, without importing it (its own imports may need
    dependencies we do not install); None where it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def write_atomically(path, data: Union[str, bytes]) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`.

    Readers see the old file or the new one, never part of it. The file gets the usual
    0644 mode (a temporary file is private).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}-", suffix=".tmp")
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def portable_path(path: str, start: Optional[str] = None) -> str:
    """`path` as results record it: relative to `start` (the working directory, where our commands
    run: the checkout) when it lies inside it or one folder up (../shared/data), else absolute.
    Result files then name no machine's checkout."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, start or os.getcwd())
    return absolute if relative.startswith(os.path.join(os.pardir, os.pardir)) else relative


class FolderBusy(RuntimeError):
    """Another live process holds the folder (`folder_lock`)."""


LOCK_FILE = ".lock"


@contextlib.contextmanager
def _hold(lock_path: str, shown: str, what: str) -> Iterator[None]:
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 256, 0).decode("utf-8", "replace").strip() or "another process"
            raise FolderBusy(f"{shown} is in use by {holder}; wait for it to finish or use another folder.") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"process {os.getpid()} on {socket.gethostname()} ({what})".encode(), 0)
        yield
    finally:
        os.close(handle)  # releases the lock


def folder_lock(folder: str, what: str):
    """Holds `folder` for this process while the block runs: a second process asking for it stops
    at once with FolderBusy naming the holder's PID and host. The lock is the kernel's (`flock` on
    `<folder>/.lock`), so it is released on any exit, a kill included, and never goes stale; it
    holds between processes of one machine (and on file systems that pass `flock` through)."""
    os.makedirs(folder, exist_ok=True)
    return _hold(os.path.join(folder, LOCK_FILE), folder, what)


def place_lock(path: str, what: str):
    """`folder_lock` for an output that is replaced whole (a build renamed into place): the lock
    file lies beside it, `.<name>.lock` in its parent folder."""
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return _hold(os.path.join(parent, f".{name}.lock"), path, what)
