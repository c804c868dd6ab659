"""keras-alage: fine-grained age estimation with attention LSTM networks (AL-ResNet, AL-RoR)."""

__version__ = "0.1.0"
