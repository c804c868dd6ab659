"""Where the checkout's shared folders are: `models/` (released models) and `configs/` (flagfiles).

One definition for every module that needs them. `ALAGE_HOME` names a checkout explicitly (for
an installed package run from elsewhere); else the checkout this package was installed from
(`pip install -e .`), else the working directory.
"""

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def home() -> str:
    """The checkout whose `models/` and `configs/` are used."""
    explicit = os.environ.get("ALAGE_HOME")
    if explicit:
        return explicit
    beside = os.path.dirname(PACKAGE_DIR)
    if os.path.isdir(os.path.join(beside, "models")) and os.path.isdir(os.path.join(beside, "configs")):
        return beside
    return os.getcwd()


def models_dir() -> str:
    return os.path.join(home(), "models")


def configs_dir() -> str:
    return os.path.join(home(), "configs")


def tools_dir() -> str:
    """`tools/`: the npm project that installs face-api's package (its weights and its runtime)."""
    return os.path.join(home(), "tools")
