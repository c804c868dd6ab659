"""The attention LSTM branch (section III-C of the paper).

last feature map -> global average pool -> LSTM (128-d hidden and cell, state carried
from image to image) -> S = concat(cell, hidden) -> 4 sigmoids (x, y, w, h) -> crop that
box out of the feature map with `tf.image.crop_and_resize` -> average pool -> local
feature for the local softmax head.

The LSTM's memory is explicit state, one (hidden, cell) pair shared by all images:

* every image of a batch takes one LSTM step from the carried state, so a batch runs in
  parallel and any batch size, including a partial last batch, works;
* after a training step the carried state becomes the mean of the new states over the
  whole global batch, all-reduced across replicas and workers, so every replica holds
  the same memory and one device and N replicas agree;
* inference never writes the state, and `freeze_state()` stops training from writing it
  too, so the same image gets the same answer whatever came before;
* `reset_state()` zeroes it, e.g. before a new training stage.

BUILD_NOTES.md explains how this differs from Torch's per-batch-row state and why.
"""

from typing import Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from keras_alage.models import heads

PACKAGE = "keras_alage"


@keras.saving.register_keras_serializable(package=PACKAGE)
class CarriedStateLSTM(layers.Layer):
    """One LSTM step per image from a memory carried across images and batches.

    Input: [batch, features]. Output: S = concat(cell, hidden), [batch, 2 * units].
    """

    def __init__(self, units: int = 128, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"CarriedStateLSTM units must be positive; received {units}.")
        self.units = units
        self.cell = layers.LSTMCell(units, name="cell", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.cell.build(input_shape)
        # The memory is float32 whatever the compute dtype, and identical on every
        # replica: assignments are all-reduced in `_carry` and "mean" keeps them in sync.
        state = dict(
            shape=(1, self.units),
            initializer="zeros",
            trainable=False,
            autocast=False,
            dtype="float32",
            aggregation="mean",
        )
        self.hidden_state = self.add_weight(name="hidden_state", **state)
        self.cell_state = self.add_weight(name="cell_state", **state)
        # 1.0 carries the state in training calls; 0.0 freezes it. A variable, not a
        # Python flag, so freezing takes effect in already-traced functions and saves.
        self.carry_enabled = self.add_weight(
            name="carry_enabled",
            shape=(),
            initializer="ones",
            trainable=False,
            autocast=False,
            dtype="float32",
            aggregation="mean",
        )

    def call(self, inputs, training=False):
        batch = tf.shape(inputs)[0]
        compute_dtype = self.compute_dtype
        h_prev = tf.cast(tf.tile(tf.convert_to_tensor(self.hidden_state), [batch, 1]), compute_dtype)
        c_prev = tf.cast(tf.tile(tf.convert_to_tensor(self.cell_state), [batch, 1]), compute_dtype)
        hidden, (hidden, cell) = self.cell(inputs, [h_prev, c_prev], training=training)
        if training and self.trainable:  # frozen (the global stage): the memory stays as it is
            self._carry(hidden, cell)
        return tf.concat([cell, hidden], axis=-1)

    @staticmethod
    def split_output(step):
        """(hidden, cell) of the layer's output S = concat(cell, hidden), as float32."""
        cell, hidden = tf.split(tf.cast(step, tf.float32), 2, axis=-1)
        return hidden, cell

    def _carry(self, hidden, cell):
        """Sets the memory to the global-batch mean of the new states (no gradient)."""
        hidden = tf.stop_gradient(tf.cast(hidden, "float32"))
        cell = tf.stop_gradient(tf.cast(cell, "float32"))
        sums = tf.concat([tf.reduce_sum(hidden, 0), tf.reduce_sum(cell, 0)], axis=0)
        count = tf.cast(tf.shape(hidden)[0], "float32")
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            sums, count = context.all_reduce(tf.distribute.ReduceOp.SUM, [sums, count])
        mean = tf.reshape(sums / tf.maximum(count, 1.0), (2, 1, self.units))
        gate = tf.convert_to_tensor(self.carry_enabled) * tf.cast(count > 0, "float32")
        old_h = tf.convert_to_tensor(self.hidden_state)
        old_c = tf.convert_to_tensor(self.cell_state)
        self.hidden_state.assign(gate * mean[0] + (1.0 - gate) * old_h)
        self.cell_state.assign(gate * mean[1] + (1.0 - gate) * old_c)

    def reset_state(self):
        """Forgets the memory: hidden and cell state back to zero."""
        self.hidden_state.assign(keras.ops.zeros_like(self.hidden_state))
        self.cell_state.assign(keras.ops.zeros_like(self.cell_state))

    def freeze_state(self, frozen: bool = True):
        """Stops (or resumes) writing the memory in training calls."""
        self.carry_enabled.assign(0.0 if frozen else 1.0)

    @property
    def state_frozen(self) -> bool:
        return float(keras.ops.convert_to_numpy(self.carry_enabled)) == 0.0

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionBox(layers.Layer):
    """Maps the location network's 4 sigmoids to a box that always lies inside the map.

    (s_x, s_y, s_w, s_h) in (0, 1) become width w = m + (M - m) s_w, height likewise,
    and top-left x = s_x (1 - w), y = s_y (1 - h), with m = `min_size` and M =
    `max_size`, so that 0 <= x < x + w <= 1 for any input and the mapping stays smooth,
    which keeps gradients flowing to the box (clipping would cut them). All-zero logits
    give a centred box. Outputs `[batch, 4]` as (x, y, w, h) in crop_and_resize's frame
    (fractions of the span between the first and last cell centres; `InputFrameBox` gives the
    region on the input).

    The paper bounds nothing (M = 1). On a small feature map the branch can then learn the
    whole map as its "region" (BUILD_NOTES.md); M < 1 keeps the crop local.
    """

    def __init__(self, min_size: float = 1.0 / 7.0, max_size: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < min_size < max_size <= 1.0:
            raise ValueError(
                f"AttentionBox needs 0 < min_size < max_size <= 1; received {min_size}, {max_size}."
            )
        self.min_size = float(min_size)
        self.max_size = float(max_size)

    def call(self, unit):
        s_x, s_y, s_w, s_h = tf.unstack(unit, num=4, axis=-1)
        w = self.min_size + (self.max_size - self.min_size) * s_w
        h = self.min_size + (self.max_size - self.min_size) * s_h
        return tf.stack([s_x * (1.0 - w), s_y * (1.0 - h), w, h], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"min_size": self.min_size, "max_size": self.max_size})
        return config


def leaky_clip(value, low, high, leak: float):
    """`value` clipped to [low, high] whose gradient is 1 inside (bounds included) and `leak`
    outside, never 0: the forward value is the clip, the backward pass a straight-through
    estimator scaled by `leak` where the clip holds. So a parameter pushed past a bound can
    always be pulled back, which a sigmoid squashed near 0 or 1 cannot (its slope vanishes)."""
    clipped = tf.clip_by_value(value, low, high)
    inside = tf.cast((value >= low) & (value <= high), value.dtype)
    slope = inside + (1.0 - inside) * leak
    return clipped + slope * (value - tf.stop_gradient(value))  # exactly the clip forward, whatever the value


# How much a unit of the location network's output moves the movable box (`MovableBox.raw_scale`):
# a step of that dense layer moves its output by about rate x gradient x |S|^2 (S 256-d). At 1 the
# box sat at its minimum size in a corner of the 7x7 map within 4 steps at every rate tried (0.0003
# to 0.01; TinyXception fine-tuned on UTKFace, local head copied); at 0.1 it moved and differed
# between faces after 12 steps at 0.001 and reached a bound at 0.01; at 0.01 it had hardly moved.
RAW_SCALE = 0.1


@keras.saving.register_keras_serializable(package=PACKAGE)
class MovableBox(layers.Layer):
    """A box whose centre moves independently of its size, and whose gradient never dies.

    The location network's 4 unconstrained outputs (u_x, u_y, u_w, u_h), no sigmoid, give a
    centre c = 1/2 + u and a log-size, w = `initial_size` exp(u_w), clipped into [min, max]
    with `leaky_clip`. The box's edges are c -+ w/2, each clipped into the map (leaky too):
    left edge in [0, 1 - min], right edge in [left + min, 1]. So

    * at the whole map (c = 1/2, w = 1) moving the centre moves one edge inward: the box both
      shrinks and moves, and the centre's gradient is that of an edge inside its range, 1;
    * a size pushed past its bound still answers (slope `leak`), so it can come back;
    * all-zero outputs give a centred box of `initial_size`.

    Outputs (x, y, w, h) in crop_and_resize's frame, as `AttentionBox` (which stays for the
    released models that serialise it: its width m + (M - m) sigmoid saturates at the whole
    map, where x = s_x (1 - w) also takes the centre's gradient away).
    """

    def __init__(self, min_size: float = 1.0 / 7.0, max_size: float = 1.0, initial_size: Optional[float] = None,
                 leak: float = 0.1, raw_scale: float = RAW_SCALE, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < min_size < max_size <= 1.0:
            raise ValueError(f"MovableBox needs 0 < min_size < max_size <= 1; received {min_size}, {max_size}.")
        initial_size = 0.5 * (min_size + max_size) if initial_size is None else float(initial_size)
        if not min_size <= initial_size <= max_size:
            raise ValueError(f"MovableBox's initial_size {initial_size} lies outside [{min_size}, {max_size}].")
        if not 0.0 < leak <= 1.0:
            raise ValueError(f"MovableBox's leak must be in (0, 1]; received {leak}.")
        if not raw_scale > 0.0:
            raise ValueError(f"MovableBox's raw_scale must be positive; received {raw_scale}.")
        self.raw_scale = float(raw_scale)
        self.min_size, self.max_size = float(min_size), float(max_size)
        self.initial_size, self.leak = initial_size, float(leak)

    def _edges(self, centre, size_logit):
        # the exponent kept finite (a step of a diverging run once gave inf - inf = nan): a size
        # logit a little past either bound already gives the bound
        low_logit = float(np.log(self.min_size / self.initial_size)) - 1.0
        high_logit = float(np.log(self.max_size / self.initial_size)) + 1.0
        size_logit = leaky_clip(size_logit, low_logit, high_logit, self.leak)
        size = leaky_clip(self.initial_size * tf.exp(size_logit), self.min_size, self.max_size, self.leak)
        low = leaky_clip(centre - size / 2.0, 0.0, 1.0 - self.min_size, self.leak)
        high = leaky_clip(centre + size / 2.0, low + self.min_size, 1.0, self.leak)
        return low, high - low

    def call(self, raw):
        raw = tf.cast(raw, tf.float32)
        raw = tf.where(tf.math.is_finite(raw), raw, tf.zeros_like(raw))  # a diverged run's nan: no wild gather
        raw = raw * self.raw_scale
        u_x, u_y, u_w, u_h = tf.unstack(raw, num=4, axis=-1)
        x, w = self._edges(0.5 + leaky_clip(u_x, -1.0, 1.0, self.leak), u_w)
        y, h = self._edges(0.5 + leaky_clip(u_y, -1.0, 1.0, self.leak), u_h)
        return tf.stack([x, y, w, h], axis=-1)

    def raw_for(self, box) -> np.ndarray:
        """The outputs (u_x, u_y, u_w, u_h) that give `box` (x, y, w, h), inside the bounds."""
        x, y, w, h = (float(v) for v in box)
        return np.array([x + w / 2 - 0.5, y + h / 2 - 0.5, np.log(w / self.initial_size),
                         np.log(h / self.initial_size)]) / self.raw_scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"min_size": self.min_size, "max_size": self.max_size, "initial_size": self.initial_size,
                       "leak": self.leak, "raw_scale": self.raw_scale})
        return config


# The box parametrisations a model can have (`ModelConfig.box`), each with the location layer's
# activation, the box layer and how the crop samples the map: "bounded" the paper's sigmoids
# (`AttentionBox`, what released models hold, sampled by crop_and_resize), "movable" `MovableBox`
# (sampled by gathers, which pass the box a gradient on cell centres).
BOX_PARTS = {"bounded": ("sigmoid", AttentionBox, "crop_and_resize"), "movable": (None, MovableBox, "gather")}
BOX_KINDS = tuple(BOX_PARTS)


@keras.saving.register_keras_serializable(package=PACKAGE)
class InputFrameBox(layers.Layer):
    """The region a box samples, as fractions of the model's input (what is drawn and reported).

    `tf.image.crop_and_resize` maps a normalised coordinate u onto the feature map's cell
    centres, u (H - 1) in cells, not onto its edges; cell i's centre lies at (i + 1/2) / H of
    the input (the map covering the input). So a box (x, y, w, h) of the branch samples
    x' = (1/2 + x (W - 1)) / W, w' = w (W - 1) / W of the input (and likewise y, h): on a 4x4
    map, 0.125 + 0.75 u. Inputs: (features [batch, H, W, C], box); output: the input box.
    """

    def call(self, inputs):
        features, box = inputs
        return input_frame_box(box, features.shape[1], features.shape[2])

    def compute_output_shape(self, input_shape):
        return input_shape[1]


def input_frame_box(box, height: int, width: int):
    """A branch box (crop_and_resize's frame) -> fractions of the input (see `InputFrameBox`)."""
    x, y, w, h = tf.unstack(tf.cast(box, tf.float32), num=4, axis=-1)
    return tf.stack([(0.5 + x * (width - 1)) / width, (0.5 + y * (height - 1)) / height,
                     w * (width - 1) / width, h * (height - 1) / height], axis=-1)


def sampling_box(input_box, height: int, width: int):
    """Inverse of `input_frame_box`: fractions of the input -> the branch's crop_and_resize box."""
    x, y, w, h = (np.asarray(input_box, np.float64)[..., i] for i in range(4))
    return np.stack([(x * width - 0.5) / (width - 1), (y * height - 0.5) / (height - 1),
                     w * width / (width - 1), h * height / (height - 1)], axis=-1)


def box_to_corners(box):
    """(x, y, w, h) -> (y1, x1, y2, x2), the order `tf.image.crop_and_resize` takes."""
    x, y, w, h = tf.unstack(box, num=4, axis=-1)
    return tf.stack([y, x, y + h, x + w], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CropAndPool(layers.Layer):
    """Bilinearly crops each image's box out of its feature map and average-pools it.

    Inputs: (features [batch, H, W, C], box [batch, 4] as (x, y, w, h)).
    Output: the local feature, [batch, C].

    `tf.image.crop_and_resize` has no XLA kernel; with `xla_compatible` set (see
    `use_xla_compatible_crop`) the same bilinear sampling is done with gathers, which XLA
    compiles. The two agree to float precision (tests/test_attention.py).

    `sampling` "gather" always samples with gathers: crop_and_resize's gradient with respect to
    the box is zero for a sample lying exactly on a cell centre (its floor and ceiling are the
    same cell), which at the whole map with a crop as large as the map is every sample, so a
    box there could not learn to leave (issue 35); the gathers pass the one-sided slope.
    """

    def __init__(self, crop_size: Sequence[int] = (7, 7), sampling: str = "crop_and_resize", **kwargs):
        super().__init__(**kwargs)
        crop_size = tuple(int(s) for s in crop_size)
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f"CropAndPool crop_size must be two positive ints; received {crop_size}.")
        if sampling not in CROP_SAMPLING:
            raise ValueError(f"CropAndPool sampling must be one of {CROP_SAMPLING}; received {sampling!r}.")
        self.crop_size = crop_size
        self.sampling = sampling
        self.xla_compatible = False

    def call(self, inputs):
        features, box = inputs
        features = tf.cast(features, "float32")
        corners = tf.cast(box_to_corners(box), "float32")
        if self.xla_compatible or self.sampling == "gather":
            crops = gather_crop(features, corners, self.crop_size)
        else:
            crops = tf.image.crop_and_resize(
                features, corners, box_indices=tf.range(tf.shape(features)[0]),
                crop_size=self.crop_size, method="bilinear",
            )
        return tf.cast(tf.reduce_mean(crops, axis=[1, 2]), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        features_shape, _ = input_shape
        return (features_shape[0], features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"crop_size": list(self.crop_size), "sampling": self.sampling})
        return config


CROP_SAMPLING = ("crop_and_resize", "gather")


def _sample_points(start, end, size: int, count: int):
    """crop_and_resize's sample coordinates along one axis: [batch, count] in pixels."""
    if count == 1:
        return 0.5 * (start + end)[:, None] * (size - 1)
    steps = tf.range(count, dtype=start.dtype) / (count - 1)
    return (start[:, None] + (end - start)[:, None] * steps[None, :]) * (size - 1)


def gather_crop(features, corners, crop_size):
    """`tf.image.crop_and_resize(features, corners, range(batch), crop_size)` (bilinear, one
    box per image, boxes inside the map) with gathers only, so XLA compiles it and TFLite
    and ONNX convert it."""
    height, width = features.shape[1], features.shape[2]
    y1, x1, y2, x2 = tf.unstack(corners, axis=-1)
    ys = tf.clip_by_value(_sample_points(y1, y2, height, crop_size[0]), 0.0, height - 1.0)
    xs = tf.clip_by_value(_sample_points(x1, x2, width, crop_size[1]), 0.0, width - 1.0)
    y0, x0 = tf.floor(ys), tf.floor(xs)
    wy, wx = (ys - y0)[:, :, None, None], (xs - x0)[:, None, :, None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    y1i, x1i = tf.minimum(y0 + 1, height - 1), tf.minimum(x0 + 1, width - 1)

    # One flat gather (no batch_dims), which XLA, TFLite and ONNX all take.
    flat = tf.reshape(features, [-1, features.shape[3]])
    base = tf.range(tf.shape(features)[0])[:, None, None] * (height * width)

    def at(rows, cols):
        return tf.gather(flat, base + rows[:, :, None] * width + cols[:, None, :])  # [batch, ch, cw, C]

    top = at(y0, x0) + (at(y0, x1i) - at(y0, x0)) * wx
    bottom = at(y1i, x0) + (at(y1i, x1i) - at(y1i, x0)) * wx
    return top + (bottom - top) * wy


def use_xla_compatible_crop(model: keras.Model, enabled: bool = True) -> None:
    """Switches every CropAndPool of a model to the gather form (for `jit_compile`)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, CropAndPool):
            layer.xla_compatible = enabled


def apply_attention_branch(
    features,
    num_classes: int,
    lstm_units: int = 128,
    crop_size: Sequence[int] = (7, 7),
    min_box_size: float = 1.0 / 7.0,
    pooled=None,
    max_box_size: float = 1.0,
    box_kind: str = "bounded",
) -> Dict[str, keras.KerasTensor]:
    """Wires the branch onto a feature map; returns its tensors by name.

    Args:
      features: the backbone's last feature map, [batch, H, W, C].
      num_classes: outputs of the local softmax head.
      lstm_units: LSTM hidden (and cell) size; the paper uses 128, so S is 256-d.
      crop_size: bilinear samples taken inside the box before average pooling.
      min_box_size: smallest box side in crop_and_resize's frame (1/7 spans 6/7 of a cell of a
        7x7 map, the map at 224 px).
      max_box_size: largest box side (1 = the whole map, the paper).
      pooled: the globally pooled feature, if already computed for the global head.
      box_kind: one of `BOX_KINDS`: "bounded" the paper's 4 sigmoids (`AttentionBox`), "movable"
        4 unconstrained outputs (`MovableBox`).

    Returns:
      {"state": S, "box": (x, y, w, h) as crop_and_resize takes it, "input_box": the region it
      samples as fractions of the input (`InputFrameBox`), "local_feature": pooled crop,
      "local_probs": softmax}.
    """
    if pooled is None:
        pooled = layers.GlobalAveragePooling2D(name="attention_pool")(features)
    state = CarriedStateLSTM(lstm_units, name="attention_lstm")(pooled)
    if box_kind not in BOX_PARTS:
        raise ValueError(f"box must be one of {BOX_KINDS}; received {box_kind!r}.")
    activation, box_layer, sampling = BOX_PARTS[box_kind]
    # The paper's location network is a convolution over the 256-d S, i.e. a dense layer.
    location = layers.Dense(4, activation=activation, dtype="float32", name="attention_location")(state)
    box = box_layer(min_box_size, max_box_size, dtype="float32", name="attention_box")(location)
    local_feature = CropAndPool(crop_size, sampling, name="attention_crop")([features, box])
    local_probs = heads.apply_softmax_head(local_feature, num_classes, name="local_head")
    input_box = InputFrameBox(dtype="float32", name="attention_input_box")([features, box])
    return {"state": state, "box": box, "input_box": input_box, "local_feature": local_feature,
            "local_probs": local_probs}


ATTENTION_LAYER_NAMES = ("attention_lstm", "attention_location", "local_head")
WHOLE_MAP = "whole"


def fix_box(model: keras.Model, box) -> np.ndarray:
    """Makes the location network answer one box for every image: its kernel zeroed and its
    bias set so the sigmoids give `box`. `box` is (x, y, w, h) on the input (as the model
    reports it), or "whole" for the whole feature map. Train with the "local_head" stage so it
    stays fixed (a control: a local head on a fixed region, no LSTM). Returns the input box.

    Raises ValueError where the box lies outside the map or outside the box layer's size bounds.
    """
    features, _ = model.get_layer("attention_crop").input
    height, width = features.shape[1], features.shape[2]
    if min(height, width) < 2:
        raise ValueError(f"The feature map is {height}x{width}: every box samples the same cells, so there is no "
                         "region to fix (use a larger --input_size).")
    bounds = model.get_layer("attention_box")
    if isinstance(box, str):
        if box != WHOLE_MAP:
            raise ValueError(f"A fixed box is (x, y, w, h) or {WHOLE_MAP!r}; received {box!r}.")
        sampled = np.array([0.0, 0.0, 1.0, 1.0])
    else:
        sampled = sampling_box(np.asarray(box, np.float64), height, width)
    x, y, w, h = sampled
    tolerance = 1e-4  # a mean box printed to 6 decimals may sit a hair outside a bound it touches
    shown = box if isinstance(box, str) else ",".join(f"{float(v):g}" for v in box)
    if not (bounds.min_size - tolerance <= min(w, h) and max(w, h) <= bounds.max_size + tolerance):
        raise ValueError(f"Box {shown} is {w:.3f} x {h:.3f} of the {height}x{width} map as sampled; this model's "
                         f"boxes are {bounds.min_size:.3f} to {bounds.max_size:.3f} (--max_box_size).")
    if min(x, y) < -tolerance or x + w > 1 + tolerance or y + h > 1 + tolerance:
        raise ValueError(f"Box {shown} reaches outside the feature map: on a {height}x{width} map the crop samples "
                         f"between the outer cells' centres, {0.5 / width:.3f} to {1 - 0.5 / width:.3f} of the input.")

    location = model.get_layer("attention_location")
    kernel, bias = location.get_weights()
    if isinstance(bounds, MovableBox):
        location.set_weights([np.zeros_like(kernel), bounds.raw_for(np.clip(sampled, 0.0, 1.0)).astype(bias.dtype)])
        return input_frame_box(tf.constant(sampled[None], tf.float32), height, width).numpy()[0]

    def unit(size, corner):
        share = (size - bounds.min_size) / (bounds.max_size - bounds.min_size)
        place = corner / (1.0 - size) if size < 1.0 - tolerance else 0.5
        return share, place

    s_w, s_x = unit(w, x)
    s_h, s_y = unit(h, y)
    units = np.clip(np.array([s_x, s_y, s_w, s_h]), 1e-7, 1 - 1e-7)
    location.set_weights([np.zeros_like(kernel), np.log(units / (1 - units)).astype(bias.dtype)])
    return input_frame_box(tf.constant(sampled[None], tf.float32), height, width).numpy()[0]


def carried_state_layers(model: keras.Model):
    """Every CarriedStateLSTM in a model, nested models included."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, CarriedStateLSTM):
            found.append(layer)
    return found


def reset_attention_state(model: keras.Model) -> None:
    """Zeroes the memory of every attention LSTM in the model."""
    for layer in carried_state_layers(model):
        layer.reset_state()


def freeze_attention_state(model: keras.Model, frozen: bool = True) -> None:
    """Freezes (or unfreezes) the memory of every attention LSTM in the model."""
    layers_found = carried_state_layers(model)
    if not layers_found:
        raise ValueError(f"Model {model.name!r} has no attention LSTM to freeze.")
    for layer in layers_found:
        layer.freeze_state(frozen)


def attention_state(model: keras.Model, layer_name: Optional[str] = None):
    """(hidden, cell) numpy arrays of the model's (first or named) attention LSTM."""
    for layer in carried_state_layers(model):
        if layer_name is None or layer.name == layer_name:
            return (
                keras.ops.convert_to_numpy(layer.hidden_state),
                keras.ops.convert_to_numpy(layer.cell_state),
            )
    raise ValueError(f"Model {model.name!r} has no attention LSTM named {layer_name!r}.")
