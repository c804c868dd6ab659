"""The networks: backbones (ResNet, RoR, dlib's layout), the attention LSTM branch, the heads, the
age model that joins them, weight imports, and the on-disk model format with its one loader."""
