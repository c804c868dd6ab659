"""The command-line layer: each command's flags (`<command>_flags`, no TensorFlow) and its work
(`<command>`), flagfiles by short name, each command's own `--help`, one way to run a main
(`running`), and a quiet TensorFlow start-up.

Importing this package (every command does) silences TensorFlow's native start-up messages (CUDA
probing, oneDNN notices: `quiet_tensorflow`) at its first import, whoever makes it;
`ALAGE_VERBOSE=1` brings them back. Nothing here imports TensorFlow: `alage --help`, every
command's `--help` and a wrong flag answer without loading it.
"""

from keras_alage.cli import quiet_tensorflow
from keras_alage.cli.arguments import (define_compute_flags, define_thread_flags, find_flagfile, matching_files,
                                       named_folders, no_arguments, require_positive, resolve_flagfiles)
from keras_alage.cli.running import (HELP_WORDS, INPUT_ERRORS, PLACE_ERRNOS, asks_for_help, command_help,
                                     full_disk_line, print_help, run, run_command)

# What commands, scripts and tests use as cli.<name>.
__all__ = ["define_compute_flags", "define_thread_flags", "find_flagfile", "matching_files", "named_folders",
           "no_arguments", "require_positive", "resolve_flagfiles", "HELP_WORDS", "INPUT_ERRORS", "PLACE_ERRNOS",
           "asks_for_help", "command_help", "full_disk_line", "print_help", "run", "run_command"]

quiet_tensorflow.install()
