"""Every face detector of `alage_pipelines.faces.DETECTORS`, built for the face path: MTCNN and
dlib from the ground floor, BlazeFace (`face_finder`, in TensorFlow) boxed as dlib boxes
(`faces.KeypointDetector`).

BlazeFace's finder (letterbox, network, anchors, weighted NMS) runs as one frozen graph in a session
of its own with grappler's remapper off: with the remapper on, TF 2.21's oneDNN fusions crash the
process (a segmentation fault on the first call of the finder inside a `tf.function`, short and
full range alike); the age networks keep their fused kernels in the default session.
"""

from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from keras_alage.serving import face_finder
from alage_pipelines import faces

BLAZEFACE_VARIANT = "short"  # 128 px input: faces a tenth of the photo's side and larger (FG-NET: all found)


class BlazeFaceRunner:
    """`face_finder.find_faces` of one BlazeFace variant: uint8 photo [H, W, 3] -> {"boxes" [N, 4],
    "keypoints" [N, 6, 2], "scores" [N]}, photo pixels with (0, 0) the top-left pixel's centre (as
    every detector of the face path reports them; the finder's own origin is its corner)."""

    def __init__(self, variant: str = BLAZEFACE_VARIANT, min_score: float = face_finder.MIN_SCORE,
                 max_faces: int = face_finder.MAX_FACES, weights: Optional[str] = None):
        detector = face_finder.load_detector(variant, weights)  # `weights`: a saved copy, else the package's

        def find(photo):
            return face_finder.find_faces(detector, photo, min_score, max_faces)

        concrete = tf.function(find).get_concrete_function(tf.TensorSpec([None, None, 3], tf.uint8, name="photo"))
        frozen = convert_variables_to_constants_v2(concrete)
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(frozen.graph.as_graph_def(), name="")
        config = tf.compat.v1.ConfigProto()
        config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
        self._session = tf.compat.v1.Session(graph=graph, config=config)
        self._input = frozen.inputs[0].name
        keys = sorted(concrete.structured_outputs)  # the frozen outputs come in the dict's flattened order
        self._outputs = dict(zip(keys, (t.name for t in frozen.outputs)))
        self.variant = variant

    def __call__(self, photo: np.ndarray) -> Dict[str, np.ndarray]:
        found = self._session.run(self._outputs, {self._input: photo})
        return {"boxes": found["boxes"] - 0.5, "keypoints": found["keypoints"] - 0.5, "scores": found["scores"]}


def make_detector(name: str, variant: str = BLAZEFACE_VARIANT, weights: Optional[str] = None):
    """A detector of the face path by its `faces.DETECTORS` name (BlazeFace's `weights`: a
    `blazeface.save_weights` file, as a release may carry; else the copy this package carries,
    `face_finder.carried_weights`)."""
    if name == "blazeface":
        return faces.make_detector(name, find=BlazeFaceRunner(variant, weights=weights), variant=variant)
    return faces.make_detector(name)
