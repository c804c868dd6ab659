"""Reading image files and turning them into model input.

One bad file must never stop a long job, so reading raises `ImageError`, naming the file
and the reason, for the caller to skip, count and report.
"""

import os
from typing import Union

import cv2
import numpy as np
import simplejpeg

from alage_pipelines import MAX_PIXELS, inputs

# fb.resnet.torch / torchvision ImageNet statistics on [0, 1] RGB, which the ImageNet
# weights that users import expect.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# The largest image file read: an uncompressed image of MAX_PIXELS at 16 bits per channel with alpha
# (a TIFF), and room for its metadata. A larger file is refused from its size, before it is read (a
# 3 GiB sparse file named .jpg was read whole, 3.8 GB, then refused as undecodable).
MAX_FILE_BYTES = 8 * MAX_PIXELS + (16 << 20)


class ImageError(ValueError):
    """An image file that cannot be used, with its path and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Decodes an image file to RGB uint8 [H, W, 3]; greyscale and alpha are converted."""
    return read_photo(path)[1]


def decode_image(data: np.ndarray, path="<bytes>") -> np.ndarray:
    """Decodes encoded image bytes (uint8 array) to RGB uint8 [H, W, 3]."""
    if data.size == 0:
        raise ImageError(path, "file is empty")
    if data[:2].tobytes() == b"\xff\xd8":
        image = decode_jpeg(data, path)
        if image is not None:
            return image
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV's pixel budget (`pipelines.MAX_PIXELS`), read from the header
        raise ImageError(path, f"image exceeds the size limit of {MAX_PIXELS:,} pixels") from None
    if image is None:
        raise ImageError(path, "not a decodable image (corrupt, truncated or unsupported format)")
    if image.size > MAX_PIXELS * 4:
        raise ImageError(path, f"image of {image.shape[1]}x{image.shape[0]} px exceeds the size limit")
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_jpeg(data: np.ndarray, path="<bytes>", factor: int = 1):
    """A JPEG's RGB pixels, refused if libjpeg finds its compressed data damaged; None for a
    CMYK JPEG, which is checked here and left to OpenCV's colour conversion.

    libjpeg recovers from damage (a bad Huffman code, a segment that ends early, a cut with an
    end marker appended) with only a warning on the C-level stderr, which OpenCV, Pillow and
    TensorFlow all ignore. libjpeg-turbo's stop-on-warning mode (simplejpeg's `strict`) makes
    the first warning an error. Its pixels equal OpenCV's (both are libjpeg-turbo's accurate
    integer IDCT with fancy upsampling; a test compares them on real photos). Damage that still
    decodes as valid codes is beyond any decoder's check. `factor` (2, 4, 8): decoded at that
    reduction in the DCT (`ScaledPhoto`).
    """
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise ImageError(path, f"damaged or unsupported JPEG (libjpeg: {error})") from None
    if height * width > MAX_PIXELS:
        raise ImageError(path, f"image of {width}x{height} px exceeds the size limit")
    cmyk = colorspace in ("CMYK", "YCCK")
    try:
        # simplejpeg reduces to the smallest size at least min_height x min_width, by min_factor or more
        factor = 8 if cmyk else factor  # CMYK is only checked here: at 1/8 every coefficient is still read
        image = simplejpeg.decode_jpeg(data, colorspace="CMYK" if cmyk else "RGB", strict=True,
                                       min_height=-(-height // factor), min_width=-(-width // factor),
                                       min_factor=factor)
    except ValueError as error:
        raise ImageError(path, f"damaged or unsupported JPEG (libjpeg: {error})") from None
    return None if cmyk else image


def header_size(data: bytes):
    """(width, height) from a PNG or JPEG header without decoding, or None for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return int.from_bytes(data[position + 7 : position + 9], "big"), int.from_bytes(
                data[position + 5 : position + 7], "big")
        position += 2 + length
    return None


def read_photo(path) -> tuple:
    """A photo's bytes and RGB pixels, after the checks decoding alone misses.

    Refuses files larger than any image within the pixel budget (`MAX_FILE_BYTES`) before reading
    them, images whose header announces more than MAX_PIXELS before decoding them
    (decompression bombs), JPEGs without their end-of-image marker, and JPEGs whose compressed
    data libjpeg finds damaged (`decode_jpeg`): OpenCV decodes both silently, filling the rest
    with grey. Raises ImageError.
    """
    data = read_checked(path)
    return data, decode_image(np.frombuffer(data, np.uint8), path)


def read_checked(path) -> bytes:
    """A photo file's bytes, after `read_photo`'s checks that need no decoding; raises ImageError."""
    if os.path.isdir(path):
        raise ImageError(path, "is a directory, not an image file")
    try:
        data = inputs.read_bounded(path, MAX_FILE_BYTES, f"an image of at most {MAX_PIXELS:,} pixels", shown="file")
    except inputs.NotRegularFile:
        raise ImageError(path, "not a regular file (a pipe, socket or device): skipped") from None  # never waited on
    except inputs.TooLarge as error:
        raise ImageError(path, str(error).rstrip(".")) from None
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory, not an image file") from None
    except OSError as error:
        raise ImageError(path, f"cannot be read ({error.strerror or error})") from None
    size = header_size(data)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise ImageError(path, f"image of {size[0]}x{size[1]} px exceeds the size limit")
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        raise ImageError(path, "truncated JPEG (no end-of-image marker)")
    return data


# The reductions libjpeg-turbo decodes in the DCT (`ScaledPhoto`), largest first.
DCT_FACTORS = (8, 4, 2)


class ScaledPhoto:
    """A photo decoded at reduced sizes where that is all its uses need, and at full size only if
    asked.

    A large JPEG is decoded at the largest DCT reduction (1/8, 1/4 or 1/2: `DCT_FACTORS`) that
    keeps its longer side at least `min_side` (libjpeg-turbo scales in the inverse DCT: far
    cheaper than decoding every pixel and shrinking after; the damage checks of `read_photo` are
    the same, as every coefficient is still read). `at(factor)` decodes another reduction (each
    once). Decoded pixel i covers full pixels [factor * i, factor * (i + 1)), so a point maps to
    the full photo as `faces.to_full_photo(face, 1 / factor)`. Other formats, CMYK JPEGs and
    photos within `min_side` are decoded whole (factor 1).
    """

    def __init__(self, path, min_side: int):
        self.path = str(path)
        self.data = read_checked(path)
        size = header_size(self.data) if self.data[:2] == b"\xff\xd8" else None
        self.reducible = size is not None
        self._decoded = {}
        factor = next((f for f in DCT_FACTORS if size and max(size) >= f * min_side), 1)
        self.pixels = self.at(factor)
        self.factor = factor if self.reducible else 1
        self.shape = (size[1], size[0], 3) if self.reducible else self.pixels.shape

    def at(self, factor: int) -> np.ndarray:
        """The photo decoded at 1 / `factor` (1, 2, 4 or 8; always 1 where it cannot be reduced)."""
        factor = factor if self.reducible else 1
        if factor not in self._decoded:
            encoded = np.frombuffer(self.data, np.uint8)
            pixels = decode_jpeg(encoded, self.path, factor) if factor > 1 else None
            if pixels is None:  # full size, not a JPEG, or CMYK (left to OpenCV's conversion)
                pixels = decode_image(encoded, self.path)
                if factor > 1:  # a CMYK JPEG: never reduced
                    self.reducible, factor = False, 1
            self._decoded[factor] = pixels
        return self._decoded[factor]

    def full(self) -> np.ndarray:
        """The photo's pixels at full size (decoded on the first call)."""
        return self.at(1)


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an image."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes to size x size with area averaging when shrinking, bilinear otherwise."""
    shrinking = min(image.shape[:2]) > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def normalize(image):
    """uint8 RGB -> float32, ImageNet mean and standard deviation removed (numpy or tf)."""
    return (image / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def load_for_model(path, size: int) -> np.ndarray:
    """Reads a file, takes the centre square, resizes and normalises: [size, size, 3] float32."""
    return np.asarray(normalize(resize(center_square(read_image(path)), size)), np.float32)
