"""TF Serving's REST API for an exported SavedModel, on the standard library's HTTP server.

No TF Serving binary installs here (neither Debian nor PyPI has one), and kserve 0.21.0 (whose V1
protocol is TF Serving's REST shape) brings about 40 packages, the Kubernetes client among them, and
downgrades psutil; so this module answers the same requests, for trying an export on one machine and
for the tests. It serves one model's newest version (the highest numbered folder under
`--model_base_path`, as TF Serving does by default):

    GET  /v1/models/<name>[/versions/<v>]             the version's status
    GET  /v1/models/<name>[/versions/<v>]/metadata    its signatures (inputs and outputs, dtypes, shapes)
    POST /v1/models/<name>[/versions/<v>]:predict     {"signature_name": ..., "instances": [...]} or
                                                      {"signature_name": ..., "inputs": ...}

Binary values travel as {"b64": "<base64>"}; outputs whose name ends in `_bytes` are sent so. The
row format ("instances") answers {"predictions": [one value, or one object of outputs, per instance]};
the columnar format ("inputs") answers {"outputs": value or object}. An error answers {"error":
message} with TF Serving's HTTP status (400 for a bad request, 404 for an unknown model or version or
signature), and the server goes on. Request bodies are bounded (`MAX_BODY_BYTES`).
"""

import base64
import binascii
import http.server
import json
import os
import re
import threading
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from keras_alage.serving import export
from alage_pipelines import inputs

DEFAULT_SIGNATURE = "serving_default"
MAX_BODY_BYTES = 64 << 20  # a few big photos, base64-encoded
_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>/metadata|:predict)?$")


class RestError(Exception):
    """A request refused: its HTTP status and TF Serving's error text."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def newest_version(base_path: str) -> Tuple[int, str]:
    """(version, folder) of the highest numbered version under `base_path` that holds a SavedModel;
    raises FileNotFoundError naming the folder."""
    try:
        names = os.listdir(base_path)
    except OSError:
        raise FileNotFoundError(f"{base_path}: no such folder (give the folder that holds the numbered versions, "
                                "e.g. serving/age).") from None
    versions = sorted((int(n) for n in names if n.isdigit() and os.path.isfile(os.path.join(base_path, n,
                                                                                            "saved_model.pb"))))
    if not versions:
        raise FileNotFoundError(f"{base_path}: holds no version folder with a saved_model.pb (e.g. {base_path}/1/, "
                                "written by scripts/export.py).")
    return versions[-1], os.path.join(base_path, str(versions[-1]))


class ServedModel:
    """One loaded SavedModel version and its signatures."""

    def __init__(self, name: str, base_path: str):
        self.name = name
        self.version, self.path = newest_version(base_path)
        for folder, _, names in os.walk(self.path):  # TensorFlow would wait on a pipe among its files
            for file_name in names:
                inputs.check_regular(os.path.join(folder, file_name))
        self.loaded = tf.saved_model.load(self.path)
        self.signatures = dict(self.loaded.signatures)
        self.warmed = self.warm_up()

    def warm_up(self) -> int:
        """Replays the export's warm-up requests (`assets.extra/tf_serving_warmup_requests`), as TF
        Serving does before it serves a version, so the first real request finds its graph ready;
        returns how many ran. One that fails refuses the version (ValueError naming the file)."""
        path = os.path.join(self.path, "assets.extra", export.WARMUP_FILE)
        if not os.path.isfile(path):
            return 0
        from tensorflow_serving.apis import prediction_log_pb2  # the serving extra's, as in export

        count = 0
        for record in tf.data.TFRecordDataset(path):
            request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
            try:
                function = self.signature(request.model_spec.signature_name)
                function(**{name: tf.make_ndarray(proto) for name, proto in request.inputs.items()})
            except (RestError, tf.errors.OpError, ValueError, TypeError) as error:
                reason = error.message if isinstance(error, RestError) else _first_line(error)
                raise ValueError(f"{path}: warm-up request {count + 1} fails ({reason}); TF Serving would not load "
                                 "this version either.") from None
            count += 1
        return count

    def signature(self, name: Optional[str]):
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise RestError(400, f"Serving signature name: \"{name}\" not found in signature def")
        return self.signatures[name]

    def status(self) -> dict:
        return {"model_version_status": [{"version": str(self.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self) -> dict:
        definitions = {}
        for name, function in sorted(self.signatures.items()):
            definitions[name] = {
                "inputs": {key: _tensor_info(spec) for key, spec in function.structured_input_signature[1].items()},
                "outputs": {key: _tensor_info(spec) for key, spec in function.structured_outputs.items()},
                "method_name": "tensorflow/serving/predict"}
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": definitions}}}

    def predict(self, request: dict) -> dict:
        """TF Serving's answer to a :predict request body (already parsed JSON)."""
        if not isinstance(request, dict):
            raise RestError(400, "JSON Value: request body must be a JSON object")
        if ("instances" in request) == ("inputs" in request):
            raise RestError(400, "Missing 'inputs' or 'instances' key" if "instances" not in request else
                            "Not both 'inputs' and 'instances' may be given")
        signature_name = request.get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(signature_name, str):
            raise RestError(400, "'signature_name' must be a string")
        function = self.signature(signature_name)
        specs = function.structured_input_signature[1]
        rows = "instances" in request
        tensors = _row_inputs(request["instances"], specs) if rows else _columnar_inputs(request["inputs"], specs)
        try:
            outputs = function(**tensors)
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError, ValueError, TypeError) as error:
            raise RestError(400, _first_line(error)) from None
        outputs = {key: value.numpy() for key, value in outputs.items()}
        return _row_outputs(outputs) if rows else _columnar_outputs(outputs)


_NOT_THE_REASON = re.compile(r"^(Graph execution error:|Detected at node|<stack traces unavailable>|\[\[|File |"
                             r"Function call stack|\w+_fn$|in user code)")


def _first_line(error: Exception) -> str:
    """The reason in a TensorFlow error, without the graph's node names and stacks (what TF Serving
    answers is the op's own message)."""
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _NOT_THE_REASON.match(line.strip())]
    return lines[0][:500] if lines else type(error).__name__


def _tensor_info(spec) -> dict:
    dims = [] if spec.shape.rank is None else [{"size": str(-1 if d is None else d), "name": ""}
                                               for d in spec.shape.as_list()]
    return {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum), "tensor_shape": {"dim": dims,
                                                                       "unknown_rank": spec.shape.rank is None},
            "name": spec.name or ""}


def _decode_binary(value):
    """A JSON value with {"b64": ...} objects replaced by their bytes."""
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise RestError(400, "JSON Value: an object inside a tensor must be {\"b64\": <base64 string>}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RestError(400, "Unable to base64 decode") from None
    if isinstance(value, list):
        return [_decode_binary(item) for item in value]
    return value


def _tensor(value, spec, name: str) -> tf.Tensor:
    """A JSON value as the tensor the signature takes for input `name`."""
    value = _decode_binary(value)
    try:
        if spec.dtype == tf.string:
            array = np.array(value, dtype=object)
            if not all(isinstance(item, (bytes, str)) for item in array.reshape(-1)):
                raise ValueError("a string tensor holds strings or {\"b64\": ...} values")
            tensor = tf.constant(array.tolist() if array.ndim else array.item(), tf.string)
        else:
            tensor = tf.constant(np.asarray(value, dtype=spec.dtype.as_numpy_dtype))
    except (ValueError, TypeError, OverflowError) as error:
        raise RestError(400, f"input '{name}' is not a {spec.dtype.name} tensor: {_first_line(error)}") from None
    if not spec.shape.is_compatible_with(tensor.shape):
        raise RestError(400, f"input '{name}' has shape {tensor.shape.as_list()}; the signature takes "
                        f"{spec.shape.as_list()} (None: any)")
    return tensor


def _row_inputs(instances, specs: dict) -> Dict[str, tf.Tensor]:
    if not isinstance(instances, list) or not instances:
        raise RestError(400, "'instances' must be a non-empty list")
    names = sorted(specs)
    named = all(isinstance(i, dict) and "b64" not in i for i in instances)
    if len(names) == 1 and not named:
        return {names[0]: _tensor(instances, specs[names[0]], names[0])}
    if not named:
        raise RestError(400, f"this signature takes {len(names)} inputs ({', '.join(names)}); each instance must "
                        "be an object naming them")
    columns = {}
    for name in names:
        if any(name not in i for i in instances):
            raise RestError(400, f"an instance is missing input '{name}'")
        columns[name] = _tensor([i[name] for i in instances], specs[name], name)
    extra = sorted({k for i in instances for k in i} - set(names))
    if extra:
        raise RestError(400, f"input '{extra[0]}' is not one this signature takes ({', '.join(names)})")
    return columns


def _columnar_inputs(given, specs: dict) -> Dict[str, tf.Tensor]:
    names = sorted(specs)
    if isinstance(given, dict) and "b64" not in given:
        unknown = sorted(set(given) - set(names))
        missing = sorted(set(names) - set(given))
        if unknown or missing:
            raise RestError(400, f"'inputs' names {sorted(given)}; this signature takes {names}")
        return {name: _tensor(given[name], specs[name], name) for name in names}
    if len(names) != 1:
        raise RestError(400, f"this signature takes {len(names)} inputs ({', '.join(names)}); 'inputs' must be an "
                        "object naming them")
    return {names[0]: _tensor(given, specs[names[0]], names[0])}


def _json_value(array: np.ndarray, binary: bool):
    if array.dtype == object or array.dtype.kind == "S":
        if binary:
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode("ascii")}, otypes=[object])(
                array).tolist() if array.ndim else {"b64": base64.b64encode(array.item()).decode("ascii")}
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist() \
            if array.ndim else array.item().decode("utf-8", "replace")
    return array.tolist()


def _row_outputs(outputs: Dict[str, np.ndarray]) -> dict:
    batch = {value.shape[0] if value.ndim else None for value in outputs.values()}
    if len(batch) != 1 or None in batch:
        raise RestError(400, "The outputs do not share a batch dimension; use the columnar 'inputs' format")
    size = batch.pop()
    if len(outputs) == 1:
        (name, value), = outputs.items()
        return {"predictions": _json_value(value, name.endswith("_bytes"))}
    rows = [{} for _ in range(size)]
    for name, value in sorted(outputs.items()):
        for row, item in zip(rows, value):
            row[name] = _json_value(np.asarray(item, dtype=value.dtype), name.endswith("_bytes"))
    return {"predictions": rows}


def _columnar_outputs(outputs: Dict[str, np.ndarray]) -> dict:
    if len(outputs) == 1:
        (name, value), = outputs.items()
        return {"outputs": _json_value(value, name.endswith("_bytes"))}
    return {"outputs": {name: _json_value(value, name.endswith("_bytes")) for name, value in sorted(outputs.items())}}


def respond(model: ServedModel, method: str, path: str, body: bytes = b"") -> Tuple[int, dict]:
    """(HTTP status, JSON answer) of one request, as TF Serving gives it."""
    match = _PATH.match(path.split("?", 1)[0])
    if not match:
        return 404, {"error": "Malformed request: " + f"{method} {path}"[:300]}
    name, version, rest = match.group("name"), match.group("version"), match.group("rest") or ""
    if name != model.name or (version is not None and int(version) != model.version):
        what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
        return 404, {"error": f"Servable not found for request: {what}"}
    if method == "GET" and rest in ("", "/metadata"):
        return 200, model.metadata() if rest else model.status()
    if method != "POST" or rest != ":predict":
        return 404, {"error": "Malformed request: " + f"{method} {path}"[:300]}
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return 400, {"error": f"JSON Parse error: {error}"[:300]}
    try:
        return 200, model.predict(request)
    except RestError as error:
        return error.status, {"error": error.message}


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "alage-rest"
    protocol_version = "HTTP/1.1"

    def _answer(self, method: str) -> None:
        body = b""
        if method == "POST":
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                return self._send(411, {"error": "a request body needs its Content-Length"}, close=True)
            if not 0 <= length <= MAX_BODY_BYTES:
                return self._send(413, {"error": f"request body of {length} bytes; at most {MAX_BODY_BYTES} "
                                        "are read"}, close=True)
            body = self.rfile.read(length)
        status, answer = respond(self.server.model, method, self.path, body)
        self._send(status, answer)

    def _send(self, status: int, answer: dict, close: bool = False) -> None:
        data = json.dumps(answer).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's names)
        self._answer("GET")

    def do_POST(self):  # noqa: N802
        self._answer("POST")

    def log_message(self, format, *args):  # noqa: A002 (one line per request only when asked)
        if self.server.verbose:
            super().log_message(format, *args)


class RestServer(http.server.ThreadingHTTPServer):
    """TF Serving's REST API for `model`, one thread per connection."""

    daemon_threads = True

    def __init__(self, model: ServedModel, host: str = "127.0.0.1", port: int = 8501, verbose: bool = False):
        self.model, self.verbose = model, verbose
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start(model: ServedModel, host: str = "127.0.0.1", port: int = 0) -> Tuple[RestServer, threading.Thread]:
    """A server answering in a background thread (port 0: any free one; `server.url` says which);
    `server.shutdown()` stops it."""
    server = RestServer(model, host, port)
    thread = threading.Thread(target=server.serve_forever, name="alage-rest", daemon=True)
    thread.start()
    return server, thread


def serve(base_path: str, model_name: str, host: str = "127.0.0.1", port: int = 8501, verbose: bool = False) -> None:
    """Serves the newest version under `base_path` until interrupted (`scripts/serve.py`)."""
    model = ServedModel(model_name, base_path)
    with RestServer(model, host, port, verbose) as server:
        print(f"serving {model.path} as {model_name} (version {model.version}, signatures "
              f"{', '.join(sorted(model.signatures))}) at {server.url}/v1/models/{model_name}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
