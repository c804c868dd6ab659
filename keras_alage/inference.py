"""Running an age model on a batch and describing its answer for people."""

from typing import Dict, Sequence

import numpy as np


def predict(model, images: np.ndarray) -> Dict[str, np.ndarray]:
    """The model's outputs for a batch of preprocessed images, as numpy arrays; an untrained
    local head's outputs are NaN (`model.mask_untrained`)."""
    from keras_alage import model as model_lib

    outputs = model_lib.mask_untrained(model(images, training=False), model_lib.trained_heads(model))
    return {name: np.asarray(value) for name, value in outputs.items()}


def describe(outputs: Dict[str, np.ndarray], index: int, class_labels: Sequence[str], top_k: int = 5) -> str:
    """A few lines: expected ages (combined, global, local), the box and the top classes."""
    probs = outputs["probs"][index]
    x, y, w, h = outputs["box"][index]
    if np.isnan(outputs["local_age"][index]):
        lines = [
            f"expected age {outputs['age'][index]:.1f} years (global head only: the attention stage "
            "has not trained this model's local head)",
        ]
    else:
        lines = [
            f"expected age {outputs['age'][index]:.1f} years "
            f"(global head {outputs['global_age'][index]:.1f}, local head {outputs['local_age'][index]:.1f})",
            f"attention box x={x:.2f} y={y:.2f} w={w:.2f} h={h:.2f} (fractions of the image)",
        ]
    lines.append("most likely classes:")
    for k in np.argsort(probs)[::-1][:top_k]:
        lines.append(f"  {class_labels[k]:>7}  {probs[k]:.4f}  {'#' * int(round(probs[k] * 50))}")
    return "\n".join(lines)
