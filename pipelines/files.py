"""Writing files so that a crash never leaves a half-written one behind."""

import importlib.util
import os
import tempfile
from typing import Optional, Union


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
