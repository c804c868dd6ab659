import keras
import numpy as np

from keras_alage.models import age_model, attention
from keras_alage.models.age_model import ModelConfig, build_age_model


def test_outputs_names_and_shapes():
    model = build_age_model(ModelConfig(depth=18, input_size=64, age_classes="adience"))
    outputs = model(np.zeros((2, 64, 64, 3), "float32"))
    assert set(outputs) == set(age_model.OUTPUT_NAMES)
    assert outputs["probs"].shape == (2, 8) and outputs["box"].shape == (2, 4)
    assert outputs["age"].shape == (2,)
    np.testing.assert_allclose(outputs["probs"].numpy().sum(-1), 1.0, rtol=1e-5)
    assert age_model.class_ages_of(model)[4] == 28.5


def test_paper_model_shapes_at_224():
    model = build_age_model(ModelConfig(depth=34, input_size=224, age_classes="morph"))
    assert tuple(model.get_layer("backbone").output.shape) == (None, 7, 7, 512)
    assert tuple(model.get_layer("attention_lstm").output.shape) == (None, 256)
    assert model.output["probs"].shape == (None, 62)


def test_save_and_load_round_trip_keeps_outputs_and_memory(tmp_path):
    model = build_age_model(ModelConfig(depth=18, input_size=64, ror_levels=3))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype("float32")
    model(x, training=True)  # non-zero memory and moved BN statistics
    attention.freeze_attention_state(model)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    expected, got = model(x), loaded(x)
    for name in age_model.OUTPUT_NAMES:
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(attention.attention_state(loaded)[0], attention.attention_state(model)[0])
    assert loaded.get_layer("attention_lstm").state_frozen
