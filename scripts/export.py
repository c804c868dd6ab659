"""Exports a trained age model as a SavedModel for TF Serving.

The command's flags and usage are `keras_alage.cli.export_flags` (`--help` lists them), its work
`keras_alage.cli.export`; an installed package also has it as `alage export`.
"""

from keras_alage import cli

if __name__ == "__main__":
    cli.run_command("export")
