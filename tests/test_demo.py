"""The README's main command, end to end on a real face photo (small model for speed)."""

import re

from keras_alage import demo


def test_demo_predicts_a_real_face(fgnet_images):
    report = demo.run(image=str(fgnet_images[0]), depth=18, input_size=64, top_k=3)
    assert str(fgnet_images[0]) in report
    age = float(re.search(r"expected age ([\d.]+) years", report).group(1))
    assert 0.0 <= age <= 69.0
    assert len(re.findall(r"^\s+\d+\s+0\.\d{4}", report, flags=re.M)) == 3


def test_demo_default_image_comes_from_the_shared_data(shared_data, monkeypatch):
    monkeypatch.setenv("ALAGE_SHARED_DATA", str(shared_data))
    assert demo.default_image().parent == shared_data / "fgnet" / "images"
