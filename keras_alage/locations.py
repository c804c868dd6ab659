"""Where the checkout's shared folders are (`models/`, `configs/`, `tools/`) and where the default
released model is.

One definition for every module that needs them. `ALAGE_HOME` names a checkout explicitly (for
an installed package run from elsewhere); else the checkout this package was installed from
(`pip install -e .`), else the working directory.

The default released model: a checkout's `models/<name>` where there is a checkout (ALAGE_HOME or
an editable install), else the copy an installed wheel carries (`keras_alage/released/<name>`,
put there by setup.py with the SHA-256 of every file, checked before it is used). A `models/`
folder in the working directory is never taken for it.
"""

import os
from typing import Optional

from alage_pipelines import package_files

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# An installed wheel's own copy of the default released model, and its SHA256SUMS (setup.py).
RELEASED_DIR = os.path.join(PACKAGE_DIR, "released")
NAME_ONE = "name a model with --model=FOLDER (a released model's folder) or set ALAGE_HOME to a keras-alage checkout"


def checkout() -> Optional[str]:
    """The checkout named by ALAGE_HOME, else the one this package sits in (an editable install);
    None for an installed wheel."""
    explicit = os.environ.get("ALAGE_HOME")
    if explicit:
        return explicit
    beside = os.path.dirname(PACKAGE_DIR)  # site-packages for a wheel, whose other packages may be named anything
    if all(os.path.exists(os.path.join(beside, part)) for part in ("setup.py", "models", "configs")):
        return beside
    return None


def home() -> str:
    """The checkout whose `models/` and `configs/` are used (the working directory where there is none)."""
    return checkout() or os.getcwd()


def models_dir() -> str:
    return os.path.join(home(), "models")


def configs_dir() -> str:
    return os.path.join(home(), "configs")


def tools_dir() -> str:
    """`tools/`: the npm project that installs face-api's package (its weights and its runtime)."""
    return os.path.join(home(), "tools")


def default_model(name: str) -> str:
    """The folder of the default released model `name`: a checkout's `models/<name>`, else this
    installed package's own copy once every file matches the SHA-256 recorded when the wheel was
    built. Raises FileNotFoundError in one line (what was looked for or which file is not whole,
    how to name a model) where neither has a whole one (`package_files.DamagedFile` is one)."""
    home_dir = checkout()
    if home_dir is not None:
        folder = os.path.join(home_dir, "models", name)
        if os.path.isdir(folder):
            return folder
        where = "ALAGE_HOME" if os.environ.get("ALAGE_HOME") else "the checkout"
        raise FileNotFoundError(f"the default model {name} is not in {where} ({folder} does not exist); {NAME_ONE}.")
    if os.path.isfile(os.path.join(RELEASED_DIR, package_files.SUMS_FILE)):
        return package_files.verified(RELEASED_DIR, name, remedy=f"reinstall keras-alage, or {NAME_ONE}")
    raise FileNotFoundError(f"the default model {name} is not in this installed package ({RELEASED_DIR} holds no "
                            f"{package_files.SUMS_FILE}: a wheel built without it) and no checkout is named; {NAME_ONE}.")
