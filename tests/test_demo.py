"""The README's main command, end to end on a real face photo (small model for speed)."""

import re

import pytest

from keras_alage import demo
from keras_alage.model import ModelConfig, build_age_model
from pipelines import images as image_io


def test_demo_predicts_a_real_face(fgnet_images, tmp_path):
    model = build_age_model(ModelConfig(depth=18, input_size=64))
    model.save(tmp_path / "model.keras")  # the same network for the demo and for the check, not two seeded ones
    report = demo.run(image=str(fgnet_images[0]), depth=18, input_size=64, weights=str(tmp_path / "model.keras"),
                      top_k=3)
    assert str(fgnet_images[0]) in report
    age = float(re.search(r"expected age ([\d.]+) years", report).group(1))
    expected = float(model(image_io.load_for_model(fgnet_images[0], 64)[None], training=False)["age"][0])
    assert age == pytest.approx(expected, abs=0.051)  # printed with one decimal
    assert len(re.findall(r"^\s+\d+\s+0\.\d{4}", report, flags=re.M)) == 3


def test_demo_default_image_comes_from_the_shared_data(shared_data, monkeypatch):
    monkeypatch.setenv("ALAGE_SHARED_DATA", str(shared_data))
    assert demo.default_image().parent == shared_data / "fgnet" / "images"
