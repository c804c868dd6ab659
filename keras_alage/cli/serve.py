"""What `alage serve` does once its flags are parsed (its usage and flags: `serve_flags`)."""

from absl import app

from keras_alage import cli
from keras_alage.cli import compute, serve_flags
from keras_alage.serving import rest

FLAGS = serve_flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    compute.set_compute(FLAGS)  # before the model's warm-up; each request's thread reads the precision
    try:
        rest.serve(FLAGS.model_base_path, FLAGS.model_name, FLAGS.rest_api_host, FLAGS.rest_api_port,
                   FLAGS.log_requests)
    except (FileNotFoundError, ValueError) as error:  # no version there, or one whose warm-up fails
        raise app.UsageError(f"--model_base_path: {error}")
    except OSError as error:  # the port is taken, or not ours to open
        raise app.UsageError(f"--rest_api_port={FLAGS.rest_api_port}: {error.strerror or error}")
