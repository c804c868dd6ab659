"""Opening what a user hands us without waiting on it or reading it without bound.

A path named like a model file, a video or a flagfile may be a pipe (opening it waits for a writer
that may never come), a device (/dev/zero never ends) or a socket: each is refused in one line
before anything opens it. A file is read whole only when its size is within what its kind can
need (`read_bounded`).
"""

import os
import stat


class NotRegularFile(ValueError):
    """A path that is a pipe, socket, device or folder where a file is read."""


class TooLarge(ValueError):
    """A file larger than anything of its kind can be, refused before it is read."""


def kind_of(mode: int) -> str:
    """What a file of this mode is, in a user's words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_regular(path, shown=None) -> os.stat_result:
    """The file's status, where `path` (a link is followed) is a regular file; raises
    NotRegularFile naming `shown` (default: the path) otherwise, and FileNotFoundError where it
    does not exist. Nothing is opened, so a pipe is never waited on."""
    status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):
        raise NotRegularFile(f"{shown or path} is {kind_of(status.st_mode)}, not a regular file; refused.")
    return status


def read_bounded(path, limit: int, what: str = "a file of its kind", shown=None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. Opened without waiting (a pipe put in
    its place after a check is refused, not waited on); its size is checked before a byte is read,
    and reading stops past `limit` should the file grow. Raises NotRegularFile or TooLarge naming
    `shown` (default: the path), FileNotFoundError where it does not exist."""
    shown = shown or path
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        status = os.fstat(handle)
        if not stat.S_ISREG(status.st_mode):
            raise NotRegularFile(f"{shown} is {kind_of(status.st_mode)}, not a regular file; refused.")
        if status.st_size > limit:
            raise TooLarge(f"{shown} is {describe_size(status.st_size)}, more than {what} can be "
                           f"({describe_size(limit)} at most); refused unread.")
        with os.fdopen(handle, "rb", buffering=0, closefd=False) as stream:
            data = stream.read(status.st_size)  # never a buffer of `limit` for a small file
            while len(data) <= limit:  # a file that grows after fstat is read on only up to the bound
                more = stream.read(min(1 << 20, limit + 1 - len(data)))
                if not more:
                    break
                data += more
    finally:
        os.close(handle)
    if len(data) > limit:
        raise TooLarge(f"{shown} grew past {describe_size(limit)} while it was read; refused.")
    return data


def describe_size(size: int) -> str:
    """A byte count as a person reads it: 812 bytes, 3.4 MB, 3.0 GiB."""
    if size >= 1 << 30:
        return f"{size / (1 << 30):.1f} GiB"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB"
    if size >= 1 << 10:
        return f"{size / (1 << 10):.1f} KiB"
    return f"{size} bytes"
