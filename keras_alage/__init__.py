"""keras-alage: fine-grained age estimation with attention LSTM networks (AL-ResNet, AL-RoR)."""

import alage_pipelines  # noqa: F401  (first: it sets the pixel budget before anything imports OpenCV)

__version__ = "0.1.0"
