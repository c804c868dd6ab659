"""TensorFlow's first import silenced, whoever makes it: a one-shot import hook that the command
layer installs on import (`ALAGE_VERBOSE=1` keeps TensorFlow's native start-up messages)."""

import importlib.abc
import importlib.machinery
import sys

from alage_pipelines import quiet


class QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """TensorFlow's first import, by a command or any library it calls, made through
    `quiet.import_tensorflow_quietly` (the module is TensorFlow's own, spec included); later
    imports find it loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)  # where it is, for anyone who asks
        if spec is not None:
            spec.loader = self
        return spec

    def create_module(self, spec):
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # the import below finds TensorFlow as usual
        quiet.import_tensorflow_quietly()
        module = sys.modules[spec.name]
        self.loaded_spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.loaded_spec  # the import system set this finder's spec on it


def install() -> None:
    """Silences TensorFlow's first import from now on, unless it is loaded already or the user asked
    for its messages."""
    if not quiet.VERBOSE and "tensorflow" not in sys.modules \
            and not any(isinstance(finder, QuietTensorFlow) for finder in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlow())
