"""The GPU script's tiny mode runs its whole path on a CPU: MirroredStrategy, bf16, XLA, timing,
FLOPs, evaluation, and the step-parity check (skipped without a GPU, saying so)."""

import numpy as np
import pytest

from keras_alage.studies import paper_scale
from alage_pipelines import protocols
from tests.record_utils import synthetic_build

pytest.importorskip("apache_beam")


@pytest.fixture(scope="module")
def utk_like_build(tmp_path_factory):
    ages = np.random.default_rng(0).integers(1, 90, 24)
    rows = [(f"{age}_0_0_{i}.jpg", age, int(age), "", 40 + age * 2) for i, age in enumerate(ages)]
    return str(synthetic_build(tmp_path_factory.mktemp("utk"), rows, 101, lambda r: protocols.random_split(r, 0.25, 0),
                               "utkface", noise=10.0))


@pytest.mark.slow
def test_the_tiny_mode_runs_the_gpu_path_on_a_cpu(utk_like_build, two_cpu_strategy):
    # The session's MirroredStrategy over two logical CPUs (a second one per process breaks TF's collectives).
    result = paper_scale.run(utk_like_build, paper_scale.TINY, strategy=two_cpu_strategy)
    assert result["replicas"] == 2
    assert result["images_per_second"] > 0 and result["forward_gflops_per_image"] > 0
    assert len(result["epoch_seconds"]) == paper_scale.TINY.epochs
    assert np.isfinite(result["test_mae_global_head"]) and result["test_faces"] > 0
    assert result["step_parity"] == {"skipped": "no GPU"}
    assert result["share_of_bf16_peak"] is None  # no known GPU: no made-up peak


def test_the_peak_comes_from_the_device_name_or_not_at_all():
    assert paper_scale.device_peak_tflops(["NVIDIA H200"]) == 989.0
    assert paper_scale.device_peak_tflops(["NVIDIA H200", "NVIDIA H200"]) == 1978.0
    assert paper_scale.device_peak_tflops(["Some Accelerator"]) is None
