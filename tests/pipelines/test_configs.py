"""Ground-floor configs refuse a setting where they are made, in one line naming it and saying
what they received; a command words the same refusal in its flags."""

import pytest

from alage_pipelines import configs, dataset


@pytest.mark.parametrize("settings, refusal", [
    ({"min_crop_area": 0.0}, "Augmentation.min_crop_area must be in (0, 1]; received 0.0."),
    ({"min_crop_area": 1.5}, "Augmentation.min_crop_area must be in (0, 1]; received 1.5."),
    ({"downscale": -0.1}, "Augmentation.downscale is a probability in [0, 1]; received -0.1."),
    ({"grayscale": 2.0}, "Augmentation.grayscale is a probability in [0, 1]; received 2.0."),
    ({"old_photo": 1.5}, "Augmentation.old_photo is a probability in [0, 1]; received 1.5."),
    ({"train_view": "zoom"}, "Augmentation.train_view must be one of ('paper', 'eval'); received 'zoom'."),
])
def test_an_augmentation_out_of_range_is_refused_in_one_line(settings, refusal):
    with pytest.raises(configs.SettingRefused) as refused:
        configs.Augmentation(**settings)
    assert str(refused.value) == refusal
    configs.Augmentation(**{name: 1.0 if name != "train_view" else "eval" for name in settings})  # the edge is fine


@pytest.mark.parametrize("settings, refusal", [
    ({"batch_size": 0}, "DatasetConfig.batch_size must be positive; received 0."),
    ({"batch_size": 2, "input_size": 0}, "DatasetConfig.input_size must be positive; received 0."),
    ({"batch_size": 2, "shuffle_buffer": 0}, "DatasetConfig.shuffle_buffer must be positive; received 0."),
    ({"batch_size": 2, "crops": "five"}, "DatasetConfig.crops must be one of ('ten', 'center', 'center_flip', "
                                          "'shift_flip'); received 'five'."),
])
def test_a_dataset_config_out_of_range_is_refused_in_one_line(settings, refusal):
    with pytest.raises(configs.SettingRefused) as refused:
        dataset.DatasetConfig(**settings)
    assert str(refused.value) == refusal


def test_a_refusal_is_worded_in_a_callers_names():
    refused = configs.SettingRefused("{0} needs {1}=local_head (received {'box': 1}).", "A.fixed_box", "B.stage")
    assert str(refused) == "A.fixed_box needs B.stage=local_head (received {'box': 1})."
    assert refused.worded(lambda field: "--" + field.split(".")[1]) == \
        "--fixed_box needs --stage=local_head (received {'box': 1})."
