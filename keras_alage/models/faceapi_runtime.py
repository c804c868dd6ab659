"""face-api's own runtime (its npm package on TF.js's pure-JS CPU backend, run by Node): the
reference the import is checked against, and the pipeline whose face cut `faceapi_cut` measures.

Never used to answer a user: the product runs the imported Keras network. Needs Node and
`npm ci --prefix tools/face-api` (`make install` does both where npm exists).
"""

import json
import os
import subprocess
import tempfile
from typing import List, Optional, Sequence

import numpy as np

from keras_alage.models import npm_packages

SCRIPT = "reference.js"


def script_path() -> str:
    return npm_packages.script_path(SCRIPT)


def unavailable() -> Optional[str]:
    """Why the runtime cannot run here (None where it can)."""
    return npm_packages.unavailable(("@vladmandic/face-api",))


def run(mode: str, images: Sequence[np.ndarray], with_map: bool = False, timeout: float = 600) -> List:
    """face-api's results for uint8 RGB images [h, w, 3] (any sizes): mode "net" runs the age
    network on each whole image ({"age", "gender"[, "map", "map_shape"]}); "detect" runs its
    detector, landmarks and age net (a list of faces per image: "score", "box", "aligned", "age";
    boxes in pixels as x, y, width, height)."""
    reason = unavailable()
    if reason:
        raise RuntimeError(f"face-api's runtime is unavailable: {reason}.")
    with tempfile.TemporaryDirectory(prefix="faceapi-") as folder:
        listing = []
        for i, image in enumerate(images):
            image = np.ascontiguousarray(image, np.uint8)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {i}: shape {image.shape}, expected [h, w, 3].")
            raw = os.path.join(folder, f"{i}.raw")
            with open(raw, "wb") as f:
                f.write(image.tobytes())
            listing.append({"path": raw, "height": int(image.shape[0]), "width": int(image.shape[1])})
        with open(os.path.join(folder, "in.json"), "w") as f:
            json.dump(listing, f)
        output = os.path.join(folder, "out.json")
        command = ["node", script_path(), mode, os.path.join(folder, "in.json"), output] + (["--map"] if with_map else [])
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"face-api's runtime failed: {done.stderr.strip()[-500:]}")
        with open(output) as f:
            return json.load(f)["results"]
