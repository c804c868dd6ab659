"""Tiny builds and runs for the tests of fold runs and their provenance: 12 random faces of 4
subjects, a 2- or 3-fold build, one step of a ResNet-18 on 32 px."""

import cv2
import numpy as np

from keras_alage.models.age_model import ModelConfig
from keras_alage.training import fold_runs, loop
from alage_pipelines import build, faces
from alage_pipelines.records import AgeRecord

TINY = ModelConfig(depth=18, input_size=32, age_classes="fgnet")


def photos(folder, count=12):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        path = folder / f"face{i}.jpg"
        cv2.imwrite(str(path), cv2.resize(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8), (48, 48)))
        records.append(AgeRecord(str(path), float(5 + 3 * i), 5 + 3 * i, subject=f"s{i % 4}"))
    return records


def make_build(records, out, split):
    config = build.BuildConfig(output_dir=str(out), num_classes=70, crop=faces.CropSpec(size=40),
                               policy=faces.FacePolicy(detect=False), overwrite=True)
    build.build_tfrecords(split, records, config, "tiny")
    return str(out)


def run_tiny(data_dir, run_dir, epochs=1, learning_rate=0.01, folds=("fold0",), stage="global", **spec_settings):
    """One step per epoch of `TINY` on `data_dir`'s `folds`; `spec_settings`: more `RunSpec` fields."""
    spec = fold_runs.RunSpec(data_dir=data_dir, folds=folds, model=TINY, validate=True, eval_crops="center",
                             eval_batch_size=4, **spec_settings)
    config = loop.TrainConfig(run_dir=str(run_dir), epochs=epochs, steps_per_epoch=1, batch_size=4,
                              learning_rate=learning_rate, lr_decay_epochs=(), image_summaries=0, stage=stage)
    return fold_runs.run(spec, config, log=lambda *_: None, verbose=0)
