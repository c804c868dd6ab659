"""Writing files so that a crash never leaves a half-written one behind, paths as results record
them, and a folder held by one process at a time. What we write replaces only a regular file: never
a device, and never through a symbolic link."""

import contextlib
import errno
import fcntl
import importlib.util
import os
import shutil
import socket
import stat
import tempfile
from typing import Iterator, Optional, Union


def package_folder(name: str) -> Optional[str]:
    """Where an installed package's files are, without importing it (its own imports may need
    dependencies we do not install); None where it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def named(error: OSError, path: str) -> OSError:
    """`error` naming `path` where it names no file (a write's "No space left on device" names
    none), so the user's one line says which file could not be written."""
    if error.filename is None and error.errno is not None:
        return OSError(error.errno, error.strerror or os.strerror(error.errno), os.fspath(path))
    return error


def is_regular(path) -> bool:
    """True for a regular file itself (a symbolic link is not, whatever it points to)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def check_replaceable(path, shown: str) -> None:
    """Refuses an output path that exists and is not a regular file (a device such as /dev/null,
    a pipe, a folder, a symbolic link): an output replaces only a regular file. `shown` names it
    in the message ("--output=ages.csv")."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a pipe" if stat.S_ISFIFO(mode) else
                "not a regular file")
        raise FileExistsError(f"{shown} is {kind}; an output only replaces a regular file: name another.")


def open_regular(path, flags: int, mode: int = 0o644) -> int:
    """`os.open` that never follows a symbolic link at `path` and never opens anything but a
    regular file (a pipe is not waited on): a link planted where we write is refused, not
    written through. Raises FileExistsError naming the file."""
    try:
        handle = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise FileExistsError(f"{path} is a symbolic link; refused (we never write through one).") from None
        if error.errno in (errno.ENXIO, errno.EISDIR):
            raise FileExistsError(f"{path} is not a regular file; refused.") from None
        raise
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise FileExistsError(f"{path} is not a regular file; refused.")
    os.set_blocking(handle, True)
    return handle


def write_atomically(path, data: Union[str, bytes]) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`.

    Readers see the old file or the new one, never part of it. The file gets the usual
    0644 mode (a temporary file is private). A failed write (a full disk) names `path`.
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
    except OSError as error:
        _remove_quietly(temporary)
        raise named(error, path) from None
    except BaseException:
        _remove_quietly(temporary)
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def overlaps(output: str, given: str) -> bool:
    """True where `output` (a folder a command writes or replaces) is `given`, lies inside it, or
    holds it (a folder or file the command reads), symbolic links resolved."""
    a, b = os.path.realpath(output), os.path.realpath(given)
    return os.path.commonpath([a, b]) in (a, b)


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
def _hold(lock_path: str, shown: str, what: str, other: str = "another folder") -> Iterator[None]:
    handle = open_regular(lock_path, os.O_RDWR | os.O_CREAT)  # a link planted there is refused, not truncated
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 256, 0).decode("utf-8", "replace").strip() or "another process"
            raise FolderBusy(f"{shown} is in use by {holder}; wait for it to finish or use {other}.") from None
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


def place_lock(path: str, what: str, other: str = "another folder"):
    """`folder_lock` for an output that is replaced whole (a build renamed into place, a table of
    answers): the lock file lies beside it, `.<name>.lock` in its parent folder; `other` is what
    the refusal suggests instead."""
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return _hold(os.path.join(parent, f".{name}.lock"), path, what, other)


def replace_folder(staging: str, target: str, aside: str) -> None:
    """Moves a complete `staging` folder to `target` by renames: the folder there is set aside
    (renamed to `aside`, a path beside it that the caller names), `staging` renamed in, and only
    then the old one removed. A reader finds the old folder whole or the new one whole, never a
    mix (between the two renames, an instant, nothing). Where the second rename fails the old
    folder is put back; where the process is killed between them the old one waits whole at
    `aside` and the next call puts it back first.
    A `target` that is a symbolic link or not a folder is refused before anything moves."""
    if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
        kind = "a symbolic link" if os.path.islink(target) else "not a folder"
        raise FileExistsError(f"{target} is {kind}; only a folder is replaced: remove it or name another.")
    if os.path.lexists(aside):  # what a run killed mid-swap left: the old folder, whole
        if os.path.lexists(target):
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(aside, target)
    set_aside = os.path.lexists(target)
    if set_aside:
        os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        if set_aside:
            os.rename(aside, target)
        raise
    if set_aside:
        shutil.rmtree(aside, ignore_errors=True)
