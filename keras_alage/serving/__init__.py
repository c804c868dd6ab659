"""Serving: SavedModel / LiteRT / ONNX export, ages for photos and video, adapting answers to a
population's age prior."""
