"""Several networks, one answer: the AL model's age, face-api's and HSE's faceres-deep's, combined
by a recorded rule, with a calibrated interval per predicted sex and age band.

    encoded face crop (the release's cut) -> decode
      -> AL model (its crops, `export.AgeServer`)                     -> al_age, probs, box, ...
      -> face-api's rectangle of the crop (`faceapi_import.cut_face`) -> faceapi_age, faceapi_female
      -> faceres's rectangle of the crop (`faceres_import.cut_face`)  -> faceres_age (its readout)
      age = the `Combination` of the members' ages (a mean, a median, or weights per band of the
            members' median age)
      age_low, age_high = `intervals.apply_tf` of the release's table, per face-api's predicted sex
            where the table has groups, scaled by the members' spread (max - min) where it scales

Release v4 combined two members by their plain mean (recorded as {"rule": "mean",
"faceapi_weight": 0.5}); release v5 records its rule, chosen across populations
(`studies.releases.three_networks`).
"""

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import intervals
from keras_alage.models import faceapi_import, faceres_import, xception
from keras_alage.serving import export
from alage_pipelines import augment

MEMBERS = ("al", "faceapi", "faceres")  # each member answers `<member>_age`
RULES = ("mean", "median", "banded")
SEX_GROUPS = ("female", "male")  # an interval table's groups, by face-api's predicted sex
EXTRA_OUTPUTS = ("al_age", "faceapi_age", "faceres_age", "faceapi_female", "age_low", "age_high")


@dataclasses.dataclass(frozen=True)
class Combination:
    """How the members' answers become one (recorded in a release's model.json).

    rule: "mean" (equal weights), "median", or "banded": per band of the members' median age
    (`edges`), one weight per member (`weights`, a row per band, each summing to 1).
    shifts: years added afterwards per face-api's predicted sex (a row for each of `SEX_GROUPS`)
    and band of the combined age (`shift_edges`): a correction of a bias the members share."""

    rule: str = "mean"
    members: Tuple[str, ...] = ("al", "faceapi")
    edges: Tuple[float, ...] = ()
    weights: Tuple[Tuple[float, ...], ...] = ()
    shift_edges: Tuple[float, ...] = ()
    shifts: Tuple[Tuple[float, ...], ...] = ()

    def __post_init__(self):
        numbers = [*self.edges, *self.shift_edges, *(v for row in (*self.weights, *self.shifts) for v in row)]
        if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in numbers):
            raise ValueError("a combination's edges, weights and shifts must be finite numbers.")
        if self.rule not in RULES:
            raise ValueError(f"the combination rule must be one of {RULES}; received {self.rule!r}.")
        if len(self.members) < 2 or len(set(self.members)) != len(self.members) or not set(self.members) <= set(
                MEMBERS):
            raise ValueError(f"a combination takes two or more distinct members of {MEMBERS}; received "
                             f"{self.members}.")
        if self.rule == "banded":
            if list(self.edges) != sorted(self.edges) or len(self.weights) != len(self.edges) + 1:
                raise ValueError(f"a banded combination needs rising edges and one weight row per band; received "
                                 f"{len(self.edges)} edges and {len(self.weights)} rows.")
            for row in self.weights:
                if len(row) != len(self.members) or min(row) < 0 or abs(sum(row) - 1.0) > 1e-6:
                    raise ValueError(f"each band's weights must be {len(self.members)} non-negative values summing "
                                     f"to 1; received {row}.")
        elif self.edges or self.weights:
            raise ValueError(f"rule {self.rule!r} takes no edges or weights.")
        if self.shifts or self.shift_edges:
            if list(self.shift_edges) != sorted(self.shift_edges) or len(self.shifts) != len(SEX_GROUPS) or any(
                    len(row) != len(self.shift_edges) + 1 or not all(abs(v) <= 30 for v in row) for row in self.shifts):
                raise ValueError(f"shifts need rising edges and, for each of {SEX_GROUPS}, one shift of at most 30 "
                                 f"years per band; received {self.shift_edges} and {self.shifts}.")

    def to_json(self) -> dict:
        return {"rule": self.rule, "members": list(self.members), "edges": list(self.edges),
                "weights": [list(row) for row in self.weights], "shift_edges": list(self.shift_edges),
                "shifts": [list(row) for row in self.shifts]}

    @classmethod
    def from_json(cls, data: Mapping) -> "Combination":
        data = dict(data)
        if "faceapi_weight" in data:  # release v4: {"rule": "mean", "faceapi_weight": w}
            weight = float(data.pop("faceapi_weight"))
            if data.get("rule") != "mean" or not 0.0 <= weight <= 1.0:
                raise ValueError(f"a v4 combination is rule 'mean' with a face-api weight in [0, 1]; received {data}.")
            if weight == 0.5:
                return cls("mean", ("al", "faceapi"))
            return cls("banded", ("al", "faceapi"), (), ((1.0 - weight, weight),))
        return cls(data.get("rule", "mean"), tuple(data.get("members", ("al", "faceapi"))),
                   tuple(float(e) for e in data.get("edges", ())),
                   tuple(tuple(float(w) for w in row) for row in data.get("weights", ())),
                   tuple(float(e) for e in data.get("shift_edges", ())),
                   tuple(tuple(float(v) for v in row) for row in data.get("shifts", ())))


def _stack(values: Sequence):
    """Ages [..., members]: float32 tensors where any value is one, else float64 numpy."""
    if any(isinstance(v, tf.Tensor) for v in values):
        return tf.stack([tf.cast(v, tf.float32) for v in values], axis=-1)
    return np.stack([np.asarray(v, np.float64) for v in values], axis=-1)


def median(stacked):
    """Median over the last axis (members), numpy or TF alike."""
    if not isinstance(stacked, tf.Tensor):
        return np.median(stacked, axis=-1)
    ordered = tf.sort(stacked, axis=-1)
    count = stacked.shape[-1]
    return (ordered[..., (count - 1) // 2] + ordered[..., count // 2]) / 2.0


def banded_weights(combination: Combination, stacked):
    """Each face's weight per member [..., members] under a banded rule (numpy or TF as `stacked`)."""
    reference = median(stacked)
    if isinstance(stacked, tf.Tensor):
        bands = (tf.searchsorted(tf.constant(combination.edges, tf.float32), reference, side="right")
                 if combination.edges else tf.zeros_like(reference, tf.int32))
        return tf.gather(tf.constant(combination.weights, tf.float32), bands)
    bands = np.searchsorted(np.asarray(combination.edges, np.float64), reference, side="right")
    return np.asarray(combination.weights, np.float64)[bands]


def combine(ages: Mapping[str, object], combination: Combination = Combination(), female=None):
    """The combined age of each face from the members' ages (numpy arrays or tensors alike);
    `female`: face-api's probability of female, needed where the combination shifts by sex."""
    stacked = _stack([ages[member] for member in combination.members])
    graph = isinstance(stacked, tf.Tensor)
    if combination.rule == "median":
        age = median(stacked)
    elif combination.rule == "mean":
        age = tf.reduce_mean(stacked, axis=-1) if graph else stacked.mean(axis=-1)
    else:
        weighted = banded_weights(combination, stacked) * stacked
        age = tf.reduce_sum(weighted, axis=-1) if graph else weighted.sum(axis=-1)
    if not combination.shifts:
        return age
    if female is None:
        raise ValueError("this combination shifts by predicted sex; give face-api's probability of female.")
    bands = len(combination.shift_edges) + 1
    if graph:
        band = tf.searchsorted(tf.constant(combination.shift_edges, tf.float32), age, side="right") \
            if combination.shift_edges else tf.zeros_like(age, tf.int32)
        row = tf.where(tf.cast(female, tf.float32) >= 0.5, 0, 1)
        return age + tf.gather(tf.reshape(tf.constant(combination.shifts, tf.float32), [-1]), row * bands + band)
    band = np.searchsorted(np.asarray(combination.shift_edges, np.float64), age, side="right")
    row = np.where(np.asarray(female) >= 0.5, 0, 1)
    return age + np.asarray(combination.shifts, np.float64).reshape(-1)[row * bands + band]


def spread(*ages):
    """How far the members' answers lie apart (largest minus smallest): the doubt an interval table
    may scale by."""
    stacked = _stack(ages)
    if isinstance(stacked, tf.Tensor):
        return tf.reduce_max(stacked, axis=-1) - tf.reduce_min(stacked, axis=-1)
    return stacked.max(axis=-1) - stacked.min(axis=-1)


def sex_group(female_probability, table: intervals.IntervalTable):
    """Each face's group index in a per-sex table, from face-api's probability of female."""
    female, male = table.group_index(SEX_GROUPS)
    if isinstance(female_probability, tf.Tensor):
        return tf.where(female_probability >= 0.5, int(female), int(male))
    return np.where(np.asarray(female_probability) >= 0.5, female, male)


@dataclasses.dataclass(frozen=True)
class Faceres:
    """HSE's faceres-deep as a member: its network, its rectangle of the release's crop, its readout."""

    net: keras.Model
    cut: faceapi_import.FaceApiCut
    readout: str = "top2"


class EnsembleServer(tf.Module):
    """The serving graph of a release with several networks. Signatures: `serving_default` (encoded
    face crops) and `predict_crops` (decoded uint8 face crops [n, s, s, 3])."""

    def __init__(self, model: keras.Model, crops: str, faceapi_net: keras.Model, cut: faceapi_import.FaceApiCut,
                 combination: Combination = Combination(), table: Optional[intervals.IntervalTable] = None,
                 faceres: Optional[Faceres] = None):
        super().__init__(name="ensemble_server")
        missing = set(combination.members) - {"al", "faceapi"} - ({"faceres"} if faceres else set())
        if missing:
            raise ValueError(f"the combination names members this release does not have: {sorted(missing)}.")
        if table is not None and table.groups and set(table.groups) != set(SEX_GROUPS):
            raise ValueError(f"an interval table's groups must be {SEX_GROUPS}; received {table.groups}.")
        self.al = export.AgeServer(model, crops)
        self.faceapi = faceapi_net
        # faceres served with its batch norms folded into the convolutions (same answers, faster)
        self.faceres = dataclasses.replace(faceres, net=faceres_import.serving_net(faceres.net)) if faceres else None
        self.faceres_net = self.faceres.net if faceres else None  # tracked, so an export saves its variables
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
        size, faceres = xception.INPUT_SIZE, self.faceres

        def prepare(item):  # each crop decoded once, then cut for every network
            image = augment.decode(item) if encoded else item
            views = (self.al.prepare(image), faceapi_import.cut_face(image, self.cut))
            return views + ((faceres_import.cut_face(image, faceres.cut),) if faceres else ())

        signature = (self.al.views_spec(), tf.TensorSpec([size, size, 3], tf.float32))
        if faceres:
            signature += (tf.TensorSpec([faceres_import.INPUT_SIZE] * 2 + [3], tf.float32),)
        views = tf.map_fn(prepare, images, fn_output_signature=signature)
        outputs = dict(self.al.answer_views(views[0]))
        outputs.pop("age_std")  # the AL distribution's spread says nothing of the combined answer
        outputs["al_age"] = outputs["age"]
        answered = self.faceapi(views[1], training=False)
        outputs["faceapi_age"] = tf.reshape(tf.cast(answered["age"], tf.float32), [-1])
        outputs["faceapi_female"] = tf.cast(answered["gender"][:, 1], tf.float32)
        if faceres:
            probs = tf.cast(faceres.net(views[2], training=False)["age_probs"], tf.float32)
            outputs["faceres_age"] = tf.cast(faceres_import.readout(probs, faceres.readout), tf.float32)
        members = {m: outputs[f"{m}_age"] for m in self.combination.members}
        outputs["age"] = combine(members, self.combination, outputs["faceapi_female"])
        if self.table is not None:
            group = sex_group(outputs["faceapi_female"], self.table) if self.table.groups else None
            outputs["age_low"], outputs["age_high"] = intervals.apply_tf(
                self.table, outputs["age"], spread(*members.values()), group)
        return outputs

    def signatures(self) -> dict:
        return {"serving_default": self.serve_encoded, "predict_crops": self.serve_crops}
