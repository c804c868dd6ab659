"""The training step's loss and metrics: the stage's cross-entropy, the teacher terms, Torch's L2
weight decay, and the sums a batch adds to an epoch's metrics.

- Weight decay is Torch's (the paper's code): `weight_decay * w` added to each gradient,
  i.e. L2 regularisation, not decoupled decay (`with_weight_decay`).
- The loss of a step is divided by its actual global batch (`stage_loss`), so uneven planned
  batches weigh each face alike.
- Teachers as soft targets (issue 35): a batch's labels may carry, per face, a distribution over
  the classes from other networks (`TEACHER_PROBS`) and the weight of its term (`TEACHER_WEIGHT`):
  the stage's loss then adds weight x KL(teacher || the stage's prediction) per face. A per-face
  weight travels with the data (0 where no teacher answered), so no run setting changes.
"""

from typing import Dict

import keras
import numpy as np
import tensorflow as tf

TEACHER_PROBS = "teacher_probs"
TEACHER_WEIGHT = "teacher_weight"


def distillation_loss(teacher_probs, student_probs):
    """Per face KL(teacher || student) of two distributions over the same classes; no gradient
    reaches the teacher."""
    teacher = tf.stop_gradient(tf.cast(teacher_probs, tf.float32))
    student = tf.cast(student_probs, tf.float32)
    tiny = keras.backend.epsilon()
    return tf.reduce_sum(teacher * (tf.math.log(teacher + tiny) - tf.math.log(student + tiny)), axis=-1)


def soft_targets(ages, class_ages, sigma: float) -> np.ndarray:
    """Each age as a distribution over the classes: a normal of `sigma` years about it, discretised
    at the class ages and normalised ([n, classes]); what an answer of an expected age teaches."""
    ages = np.asarray(ages, np.float64)[:, None]
    classes = np.asarray(class_ages, np.float64)[None, :]
    if not sigma > 0:
        raise ValueError(f"A soft target's sigma must be positive; received {sigma}.")
    logits = -0.5 * ((classes - ages) / sigma) ** 2
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def per_face_loss(outputs, labels, spec, distill_weight: float):
    """Each face's loss: the stage head's cross-entropy, plus `distill_weight` x KL(global || local)
    (the frozen global head teaching the local head), plus its teachers' weighted KL term where the
    labels carry one."""
    per_example = tf.cast(keras.losses.sparse_categorical_crossentropy(
        tf.cast(labels["label"], tf.int32), outputs[spec.loss_output]
    ), tf.float32)
    if distill_weight:
        per_example += distill_weight * distillation_loss(outputs["global_probs"], outputs["local_probs"])
    if TEACHER_PROBS in labels:  # other networks' answers as soft targets beside the labels
        per_example += tf.cast(labels[TEACHER_WEIGHT], tf.float32) * distillation_loss(
            labels[TEACHER_PROBS], outputs[spec.loss_output])
    return per_example


def stage_loss(outputs, labels, spec, distill_weight: float, global_count, model_losses):
    """One replica's share of the step's loss: its faces' losses over the global batch
    (`global_count`, all replicas), plus the model's own regularisation losses."""
    loss = tf.reduce_sum(per_face_loss(outputs, labels, spec, distill_weight)) / global_count
    if model_losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(model_losses))
    return loss


def with_weight_decay(gradients, variables, decay: float, optimizer):
    """Torch's L2 weight decay: `decay * w` added to each gradient, in the units the optimizer
    receives. A LossScaleOptimizer gets gradients of the scaled loss and divides them by its
    loss scale, so the decay term is scaled alike (unscaled, it would shrink 2^15-fold)."""
    scale = getattr(optimizer, "dynamic_scale", None)
    factor = tf.constant(decay, tf.float32)
    if scale is not None:
        factor = factor * tf.cast(tf.convert_to_tensor(scale), tf.float32)
    return [g if g is None else g + tf.cast(factor, g.dtype) * tf.cast(v, g.dtype) for g, v in zip(gradients, variables)]


def batch_sums(outputs, labels, spec, class_ages) -> Dict[str, tf.Tensor]:
    """Sums over a (per-replica) batch, to be all-reduced and divided by the global count: stage
    loss, accuracy and MAE (stage head and combined)."""
    true = tf.cast(labels["label"], tf.int32)
    probs = tf.cast(outputs[spec.loss_output], tf.float32)
    ages = tf.gather(class_ages, true)
    return {
        "loss": tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(true, probs)),
        "accuracy": tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), true), tf.float32)),
        "mae": tf.reduce_sum(tf.abs(tf.linalg.matvec(probs, class_ages) - ages)),
        "combined_mae": tf.reduce_sum(tf.abs(tf.linalg.matvec(tf.cast(outputs["probs"], tf.float32), class_ages) - ages)),
        "count": tf.cast(tf.shape(true)[0], tf.float32),
    }


def add_sums(totals: Dict[str, float], sums) -> None:
    """Adds one batch's `batch_sums` (reduced) to `totals`."""
    for k, v in sums.items():
        totals[k] = totals.get(k, 0.0) + float(v)


def means(sums: Dict[str, float]) -> Dict[str, float]:
    """Summed metrics over their count."""
    count = max(float(sums["count"]), 1.0)
    return {k: float(v) / count for k, v in sums.items() if k != "count"}
