"""Shared test setup: two logical CPU devices (for MirroredStrategy), the commands' threads, the real
data, and a tiny untrained age model saved once for the tests that run commands on a model file."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_alage.models.age_model import ModelConfig, build_age_model  # noqa: E402
from keras_alage.serving import threads  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("ALAGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    # Must run before TensorFlow initialises its devices.
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
    # The face path's threads, as `alage predict` and `alage serve` set them at start, so their
    # in-process runs find them already set.
    threads.set_threads()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """../shared/data beside the checkout; tests that need it skip where it is absent."""
    if not (SHARED_DATA / "fgnet" / "images").is_dir():
        pytest.skip(
            f"real face data not found at {SHARED_DATA} (set ALAGE_SHARED_DATA to its folder)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def fgnet_images(shared_data):
    return sorted((shared_data / "fgnet" / "images").glob("*.JPG"))


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One MirroredStrategy over two logical CPUs for the whole session, as in a real job:
    TF's collective keys clash when a process creates a second one."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (configured in conftest.py)")
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A .keras AL-ResNet-18 at 32 px over FG-NET's classes, untrained (global head answers)."""
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet")).save(path)
    return str(path)
