import keras
import numpy as np
import pytest

from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.studies import benchmarking


def test_counted_flops_of_a_convolution_are_its_multiply_adds_times_two():
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    flops = benchmarking.forward_flops(keras.Model(inputs, outputs), 8)
    assert flops == 2 * 8 * 8 * 4 * 3 * 3 * 3


@pytest.mark.slow
def test_resnet34_at_224_counts_the_known_flops_and_the_branch_is_tiny():
    model = build_age_model(ModelConfig(depth=34, input_size=224))
    full = benchmarking.forward_flops(model, 224)
    global_only = benchmarking.forward_flops(benchmarking.global_only_model(model), 224)
    assert 7.2e9 < full < 7.5e9  # 3.6 G multiply-adds, as published for ResNet-34
    assert 0 < full - global_only < 1e-3 * full


def test_global_only_model_shares_the_weights_and_fraction_of_peak():
    model = build_age_model(ModelConfig(depth=18, input_size=64))
    global_only = benchmarking.global_only_model(model)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(global_only(x)["global_probs"], model(x)["global_probs"], atol=1e-6)
    assert benchmarking.fraction_of_peak(10.0, 1e9, 60.0) == pytest.approx(0.5)


@pytest.mark.slow
def test_op_time_profile_finds_the_convolutions_of_a_training_step(tmp_path):
    model = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="adience"))
    step = benchmarking.train_step_fn(model, 2)
    step()
    profile = benchmarking.op_time_profile(step, str(tmp_path), repeats=5)
    assert "IDLE" not in profile and list(profile.values()) == sorted(profile.values(), reverse=True)
    convolutions = sum(t for kind, t in profile.items() if "Conv2D" in kind)
    assert convolutions > 0 and "Conv2DBackpropFilter" in profile
    assert not any(kind.startswith("_Mkl") for kind in profile)  # the same names whichever kernel ran


def test_op_types_read_the_same_whichever_kernel_ran():
    assert benchmarking.canonical_op_type("_MklNativeConv2DBackpropFilter") == "Conv2DBackpropFilter"
    assert benchmarking.canonical_op_type("_MklFusedBatchNormV3") == "FusedBatchNormV3"
    assert benchmarking.canonical_op_type("Conv2D") == "Conv2D"


@pytest.mark.slow
def test_the_suite_runs_end_to_end_and_writes_every_ratio(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "suite.py"
    output = tmp_path / "bench.json"
    command = [sys.executable, str(script), "--depth=18", "--input_size=32", "--batch_size=2", "--steps=1",
               "--latency_calls=2", "--noprofile", "--noxla", f"--output={output}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    for key in ("train_fraction_of_peak", "inference_fraction_of_peak", "attention_train_overhead",
                "keras_batch_norm_train_overhead", "pipeline_images_per_s", "ten_over_center_latency"):
        assert key in results, key
    assert 0 < results["train_fraction_of_peak"] < 1 and "training step with Keras BatchNormalization" in result.stdout


@pytest.mark.slow
def test_the_photo_path_benchmark_compares_detectors_and_times_video(shared_data, tmp_path):
    """benchmarks/photo_path.py on three FG-NET photos: every detector row, stage shares that sum
    to one, the batched path answering the same ages, and video frames/s."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("dlib", reason="the released model's detector is dlib's (a dependency of keras-alage)")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "photo_path.py"
    output = tmp_path / "path"
    command = [sys.executable, str(script), f"--photos={shared_data}/fgnet/images/00[12]A0*.JPG", "--limit=3",
               f"--chips={shared_data}/utkface/crop_part1/*.jpg", "--chip_count=10", "--detectors=dlib-0,mtcnn",
               "--video_frames=12", f"--output={output}", "--mode=detectors"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "path.json").read_text())
    assert set(report["detectors"]) == {"dlib-0", "mtcnn"} and report["photos"] == 3
    for row in report["detectors"].values():
        assert sum(row["stage_shares"].values()) == pytest.approx(1.0)
        assert row["answered"] == 3 and row["batched_largest_age_difference"] < 0.01
    assert report["detectors"]["dlib-0"]["margin"] == pytest.approx(0.6)  # the model's own crop
    assert report["video"]["frames"] == 12 and report["video"]["frames_per_second"] > 0
