"""Helpers for the command-line scripts: flagfiles by short name, and the run's flags on disk."""

import os
from typing import List, Sequence

from pipelines import files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")


def resolve_flagfiles(argv: Sequence[str], search_dirs: Sequence[str] = (CONFIG_DIR,)) -> List[str]:
    """Lets `--flagfile=morph.flags` name a file of configs/ when no such file is in the
    working directory, so the short form works from the repository root."""
    resolved = []
    for arg in argv:
        if arg.startswith("--flagfile="):
            path = arg.split("=", 1)[1]
            if not os.path.exists(path):
                for folder in search_dirs:
                    candidate = os.path.join(folder, path)
                    if os.path.exists(candidate):
                        arg = f"--flagfile={candidate}"
                        break
                else:
                    places = ", ".join([os.getcwd(), *search_dirs])
                    raise SystemExit(f"--flagfile: {path} not found (looked in {places}).")
        resolved.append(arg)
    return resolved


def write_flags(run_dir: str, flag_values) -> str:
    """Saves the flags a run was started with, as a flagfile that reruns it."""
    path = os.path.join(run_dir, "flags.txt")
    files.write_atomically(path, flag_values.flags_into_string())
    return path
