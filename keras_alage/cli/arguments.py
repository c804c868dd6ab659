"""What a command's words may be: flagfiles by short name, no stray words, globs that match, sizes
of at least 1, and the compute flags of the commands that answer faces."""

import glob
import os
import sys
from typing import Dict, List, Optional, Sequence

from absl import app, flags

from keras_alage import locations
from keras_alage.serving import options
from alage_pipelines import inputs


def find_flagfile(path: str, search_dir: Optional[str] = None) -> Optional[str]:
    """`path` itself where it exists, else the file of that name under configs/ (in any of its
    sub-folders: paper/, cpu/, releases/, evidence/, quickstart/), else None."""
    if os.path.exists(path):
        return path
    search_dir = search_dir or locations.configs_dir()
    direct = os.path.join(search_dir, path)
    if os.path.exists(direct):
        return direct
    for folder, _, names in sorted(os.walk(search_dir)):
        if os.path.basename(path) in names:
            return os.path.join(folder, os.path.basename(path))
    return None


def resolve_flagfiles(argv: Sequence[str], search_dir: Optional[str] = None) -> List[str]:
    """Lets `--flagfile=morph.flags` name a file of configs/ (or of one of its sub-folders) when
    no such file is in the working directory, so the short form works from anywhere."""
    resolved = []
    for arg in argv:
        if arg.startswith("--flagfile="):
            path = arg.split("=", 1)[1]
            found = find_flagfile(path, search_dir)
            if found:
                try:  # absl would open a pipe and wait on it
                    inputs.check_regular(found, f"--flagfile={path}")
                except inputs.NotRegularFile as error:
                    print(f"{os.path.basename(sys.argv[0])}: {error}", file=sys.stderr)
                    sys.exit(2)
                arg = f"--flagfile={found}"
            else:
                places = ", ".join([os.getcwd(), search_dir or locations.configs_dir()])
                print(f"{os.path.basename(sys.argv[0])}: --flagfile: {path} not found (looked in {places}).",
                      file=sys.stderr)
                sys.exit(2)
        resolved.append(arg)
    return resolved


def no_arguments(argv: Sequence[str]) -> None:
    """Refuses words left over after the flags (a flag without its dashes, a stray path)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (every setting is a --flag)")


def matching_files(pattern: str, flag: str, limit: Optional[int] = None) -> List[str]:
    """The files a glob flag names, sorted, the first `limit` of them; refuses a glob that matches none."""
    paths = sorted(glob.glob(pattern))[:limit]
    if not paths:
        raise app.UsageError(f"--{flag}={pattern} matches no file.")
    return paths


def require_positive(*names: str, flag_values=flags.FLAGS) -> None:
    """Checks, when flags are parsed, that these integer flags are at least 1 where given: a size
    of 0 is refused before anything is opened or recorded."""
    for name in names:
        flags.register_validator(name, lambda value: value is None or value >= 1,
                                 message=f"--{name} must be at least 1", flag_values=flag_values)


def named_folders(values: Sequence[str], flag: str) -> Dict[str, str]:
    """The NAME=FOLDER values of a repeatable flag as {name: folder}, in order; refuses a value
    without both parts, a folder that is not one, and none at all."""
    named = {}
    for value in values:
        name, _, folder = value.partition("=")
        if not name or not folder:
            raise app.UsageError(f"--{flag} must be NAME=FOLDER; received {value!r}.")
        if not os.path.isdir(folder):
            raise app.UsageError(f"--{flag} {name}: {folder} is not a folder.")
        named[name] = folder
    if not named:
        raise app.UsageError(f"Give at least one --{flag}=NAME=FOLDER.")
    return named


def define_thread_flags(module_name: str) -> None:
    """--intra_op_threads and --inter_op_threads (defaults: `serving.options`; set by
    `serving.threads.set_threads`), filed under the flags module `module_name` so its --help lists them."""
    flags.DEFINE_integer("intra_op_threads", options.INTRA_OP_THREADS, "Threads each network op uses (0: one per "
                         "core). One lets the networks' independent ops run side by side: faster on few cores "
                         "(docs/performance.md).", lower_bound=0, module_name=module_name)
    flags.DEFINE_integer("inter_op_threads", options.INTER_OP_THREADS, "Network ops run at once (0: one per core).",
                         lower_bound=0, module_name=module_name)


def define_compute_flags(module_name: str) -> None:
    """--precision and the thread flags, for each command that answers faces (their options and
    defaults: `serving.options`; set by `cli.compute.set_compute`), filed under the command's flags
    module `module_name`."""
    flags.DEFINE_enum("precision", "float32", list(options.PRECISIONS),
                      "Arithmetic of the networks: float32, the documented answers; bfloat16 (opt-in), oneDNN's "
                      "bfloat16 kernels on a CPU that has them natively (AVX512_BF16 or AMX_BF16; refused elsewhere): "
                      "faster, slightly different answers (docs/serving.md).", module_name=module_name)
    define_thread_flags(module_name)
