"""Serves an exported model over HTTP with TF Serving's REST API (for trying an export here).

  python scripts/serve.py --model_base_path=serving/age --model_name=age --rest_api_port=8501

Serves the newest version under --model_base_path (the folder `scripts/export.py` writes its numbered
versions into) at http://127.0.0.1:8501/v1/models/age, with every signature of the export:
`:predict` requests as TF Serving takes them (`instances` or `inputs`, bytes as {"b64": ...}), the
model's status and `/metadata`. Flags are named as TF Serving's own (`tensorflow_model_server`;
--precision is this server's own); docs/serving.md has the requests. Ctrl-C stops it.
"""

from absl import flags

from keras_alage import cli

flags.DEFINE_string("model_base_path", None, "The folder holding the model's numbered versions (serving/age).")
flags.DEFINE_string("model_name", "age", "The model's name in request paths (/v1/models/<name>).")
flags.DEFINE_integer("rest_api_port", 8501, "Port to listen on (0: any free port, printed at start).")
flags.DEFINE_string("rest_api_host", "127.0.0.1", "Address to listen on: loopback by default; 0.0.0.0 answers "
                    "other machines too (no authentication: only on a network you trust).")
flags.DEFINE_bool("log_requests", False, "Print a line per request.")
cli.define_compute_flags(__name__)
flags.mark_flags_as_required(["model_base_path"])
flags.register_validator("rest_api_port", lambda port: 0 <= port <= 65535, message="--rest_api_port must lie in "
                         "[0, 65535]")
FLAGS = flags.FLAGS
