"""Serves an exported model over HTTP with TF Serving's REST API.

The command's flags and usage are `keras_alage.cli.serve_flags` (`--help` lists them), its work
`keras_alage.cli.serve`; an installed package also has it as `alage serve`.
"""

from keras_alage import cli

if __name__ == "__main__":
    cli.run_command("serve")
