"""Two networks, one answer: the AL model's age and face-api's, combined by a rule fixed before
any face was scored, with a calibrated interval.

    encoded face crop (the release's cut) -> decode
      -> AL model (its crops, `export.AgeServer`)                     -> al_age, probs, box, ...
      -> face-api's rectangle of the crop (`faceapi_import.cut_face`) -> faceapi_age
      age = (1 - w) al_age + w faceapi_age          (w = 0.5: the plain mean, fixed in advance)
      age_low, age_high = `intervals.apply_tf` of the release's table (scaled by |al_age - faceapi_age|)

Why a fixed mean: the only labelled faces here (FG-NET, UTKFace) are face-api's training data,
so any weight chosen on them would favour it; two estimators of similar error whose mistakes
differ (dlib's network is better on children, face-api's on people over 50) gain from the mean
without a choice to overfit.
"""

import dataclasses
from typing import Dict, Optional

import keras
import tensorflow as tf

from keras_alage.evaluation import intervals
from keras_alage.models import faceapi_import, xception
from keras_alage.serving import export
from pipelines import augment

RULE = "mean"
FACEAPI_WEIGHT = 0.5
EXTRA_OUTPUTS = ("al_age", "faceapi_age", "age_low", "age_high")


@dataclasses.dataclass(frozen=True)
class Combination:
    """How the two answers become one (recorded in a release's model.json)."""

    rule: str = RULE
    faceapi_weight: float = FACEAPI_WEIGHT

    def __post_init__(self):
        if self.rule != RULE or not 0.0 <= self.faceapi_weight <= 1.0:
            raise ValueError(f"the combination is rule {RULE!r} with a face-api weight in [0, 1]; "
                             f"received {self.rule!r}, {self.faceapi_weight}.")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def combine(al_age, faceapi_age, combination: Combination = Combination()):
    """The combined age (numpy or tensors alike)."""
    w = combination.faceapi_weight
    return (1.0 - w) * al_age + w * faceapi_age


def spread(al_age, faceapi_age):
    """How far the two answers lie apart: the doubt an interval table may scale by."""
    return abs(al_age - faceapi_age)


class EnsembleServer(tf.Module):
    """The serving graph of a two-network release. Signatures: `serving_default` (encoded face
    crops) and `predict_crops` (decoded uint8 face crops [n, s, s, 3])."""

    def __init__(self, model: keras.Model, crops: str, faceapi_net: keras.Model, cut: faceapi_import.FaceApiCut,
                 combination: Combination = Combination(), table: Optional[intervals.IntervalTable] = None):
        super().__init__(name="ensemble_server")
        self.al = export.AgeServer(model, crops)
        self.faceapi = faceapi_net
        self.cut, self.combination, self.table = cut, combination, table
        self.input_size = self.al.input_size
        self.al_input_size = tf.Variable(self.input_size, trainable=False, name="al_input_size")
        self.serve_encoded = tf.function(
            lambda images: self._serve(images, encoded=True),
            input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        self.serve_crops = tf.function(
            lambda images: self._serve(images, encoded=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])

    def _serve(self, images, encoded: bool) -> Dict[str, tf.Tensor]:
        size = xception.INPUT_SIZE

        def prepare(item):  # each crop decoded once, then cut for both networks
            image = augment.decode(item) if encoded else item
            return self.al.prepare(image), faceapi_import.cut_face(image, self.cut)

        views, faceapi_inputs = tf.map_fn(prepare, images, fn_output_signature=(
            self.al.views_spec(), tf.TensorSpec([size, size, 3], tf.float32)))
        outputs = dict(self.al.answer_views(views))
        outputs.pop("age_std")  # the AL distribution's spread says nothing of the combined answer
        outputs["al_age"] = outputs["age"]
        outputs["faceapi_age"] = tf.reshape(tf.cast(self.faceapi(faceapi_inputs, training=False)["age"], tf.float32),
                                            [-1])
        outputs["age"] = combine(outputs["al_age"], outputs["faceapi_age"], self.combination)
        if self.table is not None:
            outputs["age_low"], outputs["age_high"] = intervals.apply_tf(
                self.table, outputs["age"], spread(outputs["al_age"], outputs["faceapi_age"]))
        return outputs

    def signatures(self) -> dict:
        return {"serving_default": self.serve_encoded, "predict_crops": self.serve_crops}
