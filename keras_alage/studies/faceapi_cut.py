"""Where face-api's own cut (its `alignedRect`) lies inside the release's face crop, measured.

The release cuts a face once (dlib's box and 5-point alignment, margin 0.6, 256 px); face-api's
network wants the bounding box of its 68 landmarks enlarged by 20 %. Running face-api's own
pipeline (`faceapi_runtime`, detector + landmarks) on the release's crops gives that rectangle in
crop coordinates for each face; its median is the fixed rectangle the release cuts for face-api
inside the graph (`faceapi_import.FaceApiCut`). No age label is read to choose it: the agreement between the
network's age on its own cut and on the fixed one is reported, and errors against labels only
as a check (face-api was trained on FG-NET and UTKFace, so they flatter it).
"""

import dataclasses
import json
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_alage.models import faceapi_import, faceapi_runtime, xception
from alage_pipelines import faces, files, images


@dataclasses.dataclass
class CutMeasurement:
    cut: faceapi_import.FaceApiCut
    measured: int
    without_face: int
    spread: dict  # interquartile range of each fraction
    own_ages: List[float]  # face-api's age on its own pipeline, per measured face
    fixed_ages: List[float]  # its age on the fixed cut of the same crop
    labels: List[Optional[float]]

    def summary(self) -> dict:
        own, fixed = np.array(self.own_ages), np.array(self.fixed_ages)
        result = {
            "cut": self.cut.to_json(), "measured": self.measured, "without_face": self.without_face,
            "interquartile_range": self.spread,
            "own_vs_fixed_mean_abs_difference": float(np.mean(np.abs(own - fixed))),
        }
        labelled = [i for i, label in enumerate(self.labels) if label is not None]
        if labelled:
            truth = np.array([self.labels[i] for i in labelled], np.float64)
            result["mae_own_pipeline"] = float(np.mean(np.abs(own[labelled] - truth)))
            result["mae_fixed_cut"] = float(np.mean(np.abs(fixed[labelled] - truth)))
            result["labelled"] = len(labelled)
        return result


def release_crops(paths: Sequence[str], spec: faces.CropSpec, detector) -> tuple:
    """(crops, kept paths): each photo's first face cut as the release cuts it; unreadable photos
    and photos without a face are skipped."""
    crops, kept = [], []
    for path in paths:
        try:
            photo = images.read_image(path)
        except images.ImageError:
            continue
        found, _ = faces.find_face(photo, detector, faces.default_confidence(detector))
        if found is not None:
            crops.append(faces.crop_face(photo, found, spec))
            kept.append(path)
    return crops, kept


def central_face(found: List[dict], side: int) -> Optional[dict]:
    """Of face-api's faces in one crop, the one whose box centre is nearest the crop's centre."""
    if not found:
        return None
    centre = side / 2.0
    return min(found, key=lambda f: (f["box"][0] + f["box"][2] / 2 - centre) ** 2
               + (f["box"][1] + f["box"][3] / 2 - centre) ** 2)


def measure(crops: Sequence[np.ndarray], labels: Optional[Sequence[Optional[float]]] = None) -> CutMeasurement:
    """face-api's rectangle in each crop by its own pipeline; the median fractions are the cut."""
    labels = list(labels) if labels is not None else [None] * len(crops)
    detected = faceapi_runtime.run("detect", crops)
    fractions, own, kept = [], [], []
    for i, (crop, found) in enumerate(zip(crops, detected)):
        face = central_face(found, crop.shape[0])
        if face is None:
            continue
        fractions.append(np.array(face["aligned"], np.float64) / crop.shape[0])
        own.append(float(face["age"]))
        kept.append(i)
    if not fractions:
        raise ValueError("face-api found no face in any crop; nothing to measure.")
    fractions = np.array(fractions)
    cut = faceapi_import.FaceApiCut(*(float(v) for v in np.median(fractions, axis=0)))
    quartiles = np.percentile(fractions, [25, 75], axis=0)
    spread = {name: float(q1 - q0) for name, q0, q1 in zip(("x", "y", "width", "height"), *quartiles)}
    net = xception.build_faceapi_age_net()
    faceapi_import.import_faceapi_age(net)
    inputs = np.stack([faceapi_import.cut_face(tf.constant(crops[i]), cut).numpy() for i in kept])
    fixed = np.concatenate([net(inputs[s : s + 64])["age"].numpy() for s in range(0, len(inputs), 64)])
    return CutMeasurement(cut, len(kept), len(crops) - len(kept), spread, own, [float(a) for a in fixed],
                          [labels[i] for i in kept])


def write(measurement: CutMeasurement, path: str, command: str) -> dict:
    summary = dict(measurement.summary(), command=command)
    files.write_atomically(path, json.dumps(summary, indent=1) + "\n")
    return summary
