"""Files the installed package carries beside its code (a detector's model, the released model),
each checked against the SHA-256 recorded with it before it is used.

    <folder>/SHA256SUMS    one "<sha256>  <path relative to folder>" line per file (`sha256sum -c` reads it)

`detector_files/` holds the detectors' files and their sums (committed: fixed upstream files);
setup.py records the released model's sums when it builds the wheel (`write_sums`). `verified`
answers a path only once every file its folder's sums name is whole and unchanged, else raises
DamagedFile: one line naming the file and what to do.

This module imports nothing but the standard library: setup.py loads it by its path to write the
sums, so the format has one definition.
"""

import hashlib
import os
import stat
from typing import Dict, Iterable

SUMS_FILE = "SHA256SUMS"
DETECTOR_FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "detector_files")
REINSTALL = "reinstall keras-alage from the wheel or checkout it came from (pip install --force-reinstall)"


class DamagedFile(FileNotFoundError):
    """A carried file that is missing, truncated or changed since its sum was recorded: to its
    caller, no whole copy is found (all a user can do is reinstall or name another file), so it is
    reported as a missing file is, in one line."""


def sha256_of(path: str) -> str:
    """The SHA-256 of a regular file (read in 1 MiB pieces; never a pipe waited on)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise DamagedFile(f"{path} is not a regular file.")
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for piece in iter(lambda: stream.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def write_sums(folder: str, names: Iterable[str]) -> str:
    """Records the SHA-256 of each of `names` (paths relative to `folder`) in `folder`/SHA256SUMS;
    returns its path."""
    lines = [f"{sha256_of(os.path.join(folder, name))}  {name.replace(os.sep, '/')}\n" for name in sorted(names)]
    path = os.path.join(folder, SUMS_FILE)
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(lines)
    return path


def read_sums(folder: str, remedy: str = REINSTALL) -> Dict[str, str]:
    """{relative path: sha256} of `folder`/SHA256SUMS; DamagedFile where it is missing or unreadable."""
    path = os.path.join(folder, SUMS_FILE)
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read(1 << 20)
    except (OSError, UnicodeDecodeError) as error:
        raise DamagedFile(f"{path} cannot be read ({getattr(error, 'strerror', None) or error}): "
                          f"the files beside it cannot be checked; {remedy}.") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or os.path.isabs(name) or ".." in name.split("/"):
            raise DamagedFile(f"{path}: line {number} is not '<sha256>  <file>'; {remedy}.")
        sums[name] = digest.lower()
    return sums


def verified(folder: str, name: str = "", remedy: str = REINSTALL) -> str:
    """`folder`/`name` (a file, or with `name` "" the folder itself) once every file the folder's
    SHA256SUMS names under it is there with its recorded SHA-256; DamagedFile naming the first that
    is not, with `remedy`."""
    sums = read_sums(folder, remedy)
    prefix = name.rstrip("/") + "/" if name else ""
    checked = {entry: digest for entry, digest in sums.items() if entry == name or entry.startswith(prefix)}
    if not checked:
        raise DamagedFile(f"{os.path.join(folder, SUMS_FILE)} records no {name or 'file'}; {remedy}.")
    for entry, digest in sorted(checked.items()):
        path = os.path.join(folder, *entry.split("/"))
        try:
            found = sha256_of(path)
        except FileNotFoundError:
            raise DamagedFile(f"{path} is missing; {remedy}.") from None
        if found != digest:
            raise DamagedFile(f"{path}: SHA-256 differs from the one recorded in {SUMS_FILE} beside it (truncated "
                              f"or changed); {remedy}.")
    return os.path.join(folder, *name.split("/")) if name else folder


def detector_file(name: str) -> str:
    """A detector's model file carried in `detector_files/` (e.g. dlib's 5-point landmarks),
    checked against its recorded SHA-256; DamagedFile where it is missing or not whole."""
    return verified(DETECTOR_FILES, name)
