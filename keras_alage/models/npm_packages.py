"""Networks read from npm packages: where `make install` puts them (`npm ci --prefix tools/face-api`),
how a user may point elsewhere, and whether their own TF.js runtime can run here (Node and the
packages present). One lookup for face-api's and faceres-deep's imports and runtimes."""

import os
import shutil
from typing import Optional, Sequence

from keras_alage import locations

PROJECT = "face-api"  # the npm project under tools/ that pins every package


def project_dir() -> str:
    return os.path.join(locations.tools_dir(), PROJECT)


def package_dir(package: str) -> str:
    return os.path.join(project_dir(), "node_modules", *package.split("/"))


def script_path(script: str) -> str:
    return os.path.join(project_dir(), script)


def find_model(path: Optional[str], env_var: str, package: str, subfolder: str, marker: str, what: str,
               hint: str) -> str:
    """A network's source: `path` (the package's `subfolder`, the package folder, or the .tgz that
    `npm pack` writes), else $`env_var`, else the installed package; "installed" means the last two
    only. A folder counts where it holds `marker`. Raises FileNotFoundError saying how to get it."""
    path = None if path == "installed" else path
    installed = os.path.join(package_dir(package), subfolder)
    candidates = [path] if path else [os.environ.get(env_var), installed]
    for candidate in filter(None, candidates):
        if os.path.isfile(candidate) and candidate.endswith((".tgz", ".tar.gz")):
            return candidate
        for folder in (candidate, os.path.join(candidate, subfolder)):
            if os.path.isfile(os.path.join(folder, marker)):
                return folder
    where = path or f"${env_var} or tools/{PROJECT}/node_modules"
    raise FileNotFoundError(f"{what} not found at {where}; get it with: {hint}")


def unavailable(packages: Sequence[str]) -> Optional[str]:
    """Why a package's own runtime cannot run here (None where it can)."""
    if shutil.which("node") is None:
        return "node is not installed"
    for package in packages:
        if not os.path.isdir(package_dir(package)):
            return f"{package_dir(package)} is missing (npm ci --prefix tools/{PROJECT})"
    return None
