"""Data pipelines for keras-alage: readers, protocols, face preprocessing, TFRecords, tf.data.

The one pixel budget of every image we decode is set here, before anything imports OpenCV: its
decoders then refuse, from the header, any image of more pixels, whatever its format (a
20000 x 20000 TIFF is refused in milliseconds instead of decoded into gigabytes)."""

import os

MAX_PIXELS = 100_000_000  # refuse decompression bombs
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
