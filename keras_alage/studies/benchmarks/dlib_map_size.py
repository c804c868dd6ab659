"""Does dlib's age network keep its accuracy at a size whose last map is 7x7?
(`benchmarks/dlib_map_size.py`) Its layout is fully convolutional, so the released model's weights
run at any input; at 120 px its map is 7x7 (64 px: 3x3). Scores the global head (dlib's network) on
a build's held-out faces, centre view, at each size.
"""

from typing import Callable, Sequence

from keras_alage.evaluation import scoring
from keras_alage.models import age_model, release
from alage_pipelines import build, dataset


def measure(model_path: str, data_dir: str, sizes: Sequence[int], say: Callable[[str], None] = print) -> dict:
    """size -> {"map", "faces", "global_head_mae"}, each said as it is scored."""
    released, _, description = release.load(model_path)
    held_out = build.Build.open(data_dir, verify=True).part_files(["test"])
    rows = {}
    for size in sizes:
        config = age_model.ModelConfig(**dict(description["model"], input_size=size,
                                             crop_size=tuple(description["model"]["crop_size"])))
        model = age_model.build_age_model(config, class_ages=description["class_ages"])
        model.set_weights(released.get_weights())
        scores = scoring.evaluate_model(model, dataset.make_dataset(held_out, dataset.DatasetConfig(64, size, crops="center")),
                                        description["class_ages"])
        rows[str(size)] = {"map": list(model.get_layer("backbone").output_shape[1:3]), "faces": scores["count"],
                           "global_head_mae": scores["global"]["mae"]}
        say(f"{size} px: map {rows[str(size)]['map']}, MAE {scores['global']['mae']:.3f} on {scores['count']} faces")
    return rows
