"""Residual networks of residual networks (RoR): the extra shortcut levels of Eq. 2.

RoR adds, on top of each block's own (final-level) shortcut, a middle-level shortcut
from the input of every stage to the end of that stage, and a root-level shortcut from
the input of the first stage to the end of the last. These shortcuts join the last
block's sum before its ReLU:

    x_{end of stage k} = relu(g(x_{start of stage k}) [+ g(x_1) for the last stage]
                              + h(x) + F(x, W))

g is the identity where shapes agree, else a 1x1 strided convolution with batch norm
(projection, "type B"). The projection's batch-norm scale can start at zero so that a
network imported from a plain ResNet starts out computing that ResNet's function where
the shortcuts are projections (see BUILD_NOTES.md).
"""

from typing import Callable, List, Optional, Sequence

import keras

LEVELS = (1, 2, 3)


def validate_levels(levels: int) -> None:
    if levels not in LEVELS:
        raise ValueError(
            f"ror_levels must be 1 (ResNet), 2 (root + final) or 3 (root + middle + final); "
            f"received {levels!r}."
        )


class ShortcutPlan:
    """Which extra shortcuts end at which stage, for a given number of RoR levels."""

    def __init__(self, levels: int, num_stages: int):
        validate_levels(levels)
        self.levels = levels
        self.num_stages = num_stages

    def has_middle(self, stage: int) -> bool:
        return self.levels >= 3

    def has_root(self, stage: int) -> bool:
        return self.levels >= 2 and stage == self.num_stages - 1

    def extra_shortcuts(
        self,
        stage: int,
        stage_input,
        root_input,
        out_filters: int,
        stage_stride: int,
        root_stride: int,
        batch_norm: Callable,
        conv: Callable,
    ) -> List:
        """The g(.) tensors to add into the last block of `stage`, root first."""
        extras = []
        if self.has_root(stage):
            extras.append(
                shortcut(root_input, out_filters, root_stride, "ror_root", batch_norm, conv)
            )
        if self.has_middle(stage):
            extras.append(
                shortcut(
                    stage_input, out_filters, stage_stride, f"ror_stack{stage}", batch_norm, conv
                )
            )
        return extras


def shortcut(x, filters: int, stride: int, name: str, batch_norm: Callable, conv: Callable):
    """Identity when shapes agree, else 1x1/stride projection + BN named `{name}_conv/_bn`."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    y = conv(x, filters, 1, stride, name=f"{name}_conv")
    return batch_norm(y, f"{name}_bn")


def projection_layer_names(model) -> List[str]:
    """Names of the RoR projection batch-norm layers of a backbone."""
    return [
        layer.name
        for layer in model.layers
        if layer.name.startswith("ror_") and layer.name.endswith("_bn")
    ]


def zero_init_projections(model, names: Optional[Sequence[str]] = None) -> List[str]:
    """Sets the scale of the RoR projections' BN to zero (all of them, or `names`);
    returns their names."""
    names = projection_layer_names(model) if names is None else list(names)
    for name in names:
        gamma = model.get_layer(name).gamma
        gamma.assign(keras.ops.zeros_like(gamma))
    return names
