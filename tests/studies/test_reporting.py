"""Experiment reports: the side-by-side tables and the attention-box pictures."""

import types

import numpy as np
import pytest

from keras_alage.evaluation import metrics, scoring
from keras_alage.studies import reporting


def test_box_iou_by_hand():
    first = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])
    second = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.5, 0.5]])
    np.testing.assert_allclose(reporting.box_iou(first, second), [1.0, 0.125 / 0.375])


def test_box_grid_draws_each_box_where_it_belongs():
    images = np.full((3, 20, 20, 3), 128, np.uint8)
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]])
    grid = reporting.box_grid(images, boxes, ["", "", ""], columns=2, scale=2)
    assert grid.shape == (80, 80, 3)
    red = (grid[..., 2] > 200) & (grid[..., 1] < 60)
    assert red[0, 0] and red[19, 5] and not red[30, 30]  # first tile: box in its top-left quarter
    assert red[39, 40 + 25] and not red[5, 40 + 5]  # second tile (row 0, column 1): bottom-right quarter
    assert red[40 + 10, 15] and not red[40 + 20, 20]  # third tile (row 1, column 0): the centre box's edge
    with pytest.raises(ValueError, match="as many boxes"):
        reporting.box_grid(images, boxes[:2], ["", "", ""])


def test_comparison_tables_put_models_beside_the_mean_age_floor(tmp_path, monkeypatch):
    def fold(mae):
        head = {"mae": mae, "cs5": 0.5, "bands": metrics.per_band_mae([mae, mae], [0.0, 0.0])}
        return {"count": 2, "global": head, "local": head, "combined": head}

    for stage, maes in (("global", (6.0, 8.0)), ("attention", (4.0, 6.0))):
        scoring.write_report(str(tmp_path / "run" / stage), {"fold0": fold(maes[0]), "fold1": fold(maes[1])})
    ages = {("fold0", "train"): [10.0, 30.0], ("fold0", "test"): [0.0, 40.0],
            ("fold1", "train"): [20.0, 20.0], ("fold1", "test"): [20.0, 26.0]}
    monkeypatch.setattr(reporting.build.Build, "open", lambda data_dir: types.SimpleNamespace(
        fold_ages=lambda fold, side: ages[(fold, side)]))
    rows = reporting.comparison_rows("build", {"AL-ResNet": str(tmp_path / "run")})
    assert [r["head"] for r in rows] == ["-", "global (global stage)", "global (attention stage)",
                                         "local (attention stage)", "combined (attention stage)"]
    assert rows[0]["folds"]["fold0"]["mae"] == 20.0 and rows[0]["folds"]["fold1"]["mae"] == 3.0
    text = reporting.staged_runs_markdown(rows)
    assert "| mean-age predictor | - | 20.00 | 3.00 | 11.50 ± 8.50 |" in text
    assert "| AL-ResNet | combined (attention stage) | 4.00 | 6.00 | 5.00 ± 1.00 |" in text
    with pytest.raises(FileNotFoundError, match="has not finished"):
        reporting.comparison_rows("build", {"other": str(tmp_path / "missing")})


def test_box_markdown_reports_both_stages_and_links_the_grid():
    before = np.array([[0.25, 0.25, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]])
    after = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])
    text = reporting.box_markdown("fold0", before, after, "grid.jpg")
    assert "| before the attention stage | 0.250 ± 0.000 | 0.250 ± 0.000 | 0.500 ± 0.000 |" in text
    assert "| after it | 0.000 ± 0.000 |" in text and "mean 0.143, min 0.143" in text  # 1/16 over 7/16
    assert "![attention boxes](grid.jpg)" in text


def test_box_movement_is_zero_for_a_fixed_box_and_relative_to_its_size():
    fixed = np.tile([0.2, 0.3, 0.25, 0.2], (10, 1))
    moved = reporting.box_movement(fixed)
    assert moved["centre_x_std_over_width"] == pytest.approx(0.0, abs=1e-12) and moved["faces"] == 10
    shifting = fixed.copy()
    shifting[::2, 0] += 0.05  # half the faces' boxes 0.05 to the right: centre std 0.025 = 0.1 of w
    assert reporting.box_movement(shifting)["centre_x_std_over_width"] == pytest.approx(0.1, rel=1e-6)


def _face_jpegs(count, size=96):
    import cv2

    rng = np.random.default_rng(0)
    faces = []
    for _ in range(count):
        image = np.full((size, size, 3), 40, np.uint8)
        y, x = rng.integers(size // 2 - 8, size // 2 + 8, 2)
        image[y - 6: y + 6, x - 6: x + 6] = 250  # one bright "face" blob
        faces.append(cv2.imencode(".png", image)[1].tobytes())
    return faces


class _BlobFollower:
    """A stand-in model whose box is centred on the brightest spot of its input."""

    def __call__(self, images, training=False):
        images = np.asarray(images)
        size = images.shape[1]
        brightness = images.sum(axis=-1)
        boxes = []
        for picture in brightness:
            ys, xs = np.nonzero(picture >= picture.max() - 1e-3)
            cy, cx = (ys.mean() + 0.5) / size, (xs.mean() + 0.5) / size
            boxes.append([cx - 0.1, cy - 0.1, 0.2, 0.2])
        return {"box": np.array(boxes)}


def test_translation_response_is_one_for_a_box_that_follows_the_face_and_zero_for_a_fixed_one():
    faces = _face_jpegs(6)
    follows = reporting.translation_response(_BlobFollower(), faces, input_size=64, shift=4)
    assert follows["slope_x"] == pytest.approx(1.0, abs=0.05) and follows["slope_y"] == pytest.approx(1.0, abs=0.05)
    fixed = reporting.translation_response(lambda images, training=False: {"box": np.tile([0.3, 0.3, 0.2, 0.2],
                                                                                          (len(images), 1))},
                                           faces, input_size=64, shift=4)
    assert fixed["slope_x"] == pytest.approx(0.0, abs=1e-9) and fixed["faces"] == 6
