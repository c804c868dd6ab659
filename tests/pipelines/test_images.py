import os
import threading

import cv2
import numpy as np
import pytest

from alage_pipelines import images


def write(path, array, ext):
    ok, data = cv2.imencode(ext, array)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def test_colour_conversions_give_rgb(tmp_path):
    bgr = np.zeros((8, 6, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    rgb = images.read_image(write(tmp_path / "red.png", bgr, ".png"))
    assert rgb.shape == (8, 6, 3) and rgb[0, 0].tolist() == [200, 0, 0]
    grey = images.read_image(write(tmp_path / "grey.png", np.full((5, 5), 90, np.uint8), ".png"))
    assert grey.shape == (5, 5, 3) and grey[0, 0].tolist() == [90, 90, 90]
    bgra = np.dstack([bgr, np.full((8, 6), 10, np.uint8)])
    assert images.read_image(write(tmp_path / "alpha.png", bgra, ".png")).shape == (8, 6, 3)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "file is empty"), (b"not an image at all", "not a decodable image"), (None, "file not found")],
)
def test_bad_files_name_the_file_and_the_reason(tmp_path, content, reason):
    path = tmp_path / "face.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(images.ImageError, match=reason) as info:
        images.read_image(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_is_reported(tmp_path):
    path = write(tmp_path / "full.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8), ".jpg")
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:40])
    with pytest.raises(images.ImageError, match="truncated JPEG"):
        images.read_image(cut)
    # Cut in the middle of the pixels, OpenCV would decode it silently with grey fill.
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(images.ImageError, match="truncated JPEG"):
        images.read_image(tmp_path / "half.jpg")
    # Bytes after the end-of-image marker (some cameras pad) are fine.
    (tmp_path / "padded.jpg").write_bytes(data + b"\0\0")
    assert images.read_image(tmp_path / "padded.jpg").shape == (64, 64, 3)


def test_a_jpeg_damaged_inside_with_its_end_marker_kept_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    smooth = cv2.resize(rng.integers(0, 255, (8, 8, 3), np.uint8), (96, 96), interpolation=cv2.INTER_CUBIC)
    data = write(tmp_path / "full.jpg", smooth, ".jpg").read_bytes()
    middle = len(data) // 2
    damaged = {
        "cut.jpg": data[:middle] + b"\xff\xd9",  # OpenCV decodes it with a grey lower part
        "gap.jpg": data[:middle] + data[middle + 32:],  # 32 bytes lost in a copy
    }
    # Damage that still decodes as valid codes (64 zero bytes here) is beyond any decoder's check.
    for name, content in damaged.items():
        (tmp_path / name).write_bytes(content)
        assert cv2.imread(str(tmp_path / name)) is not None  # what a plain decode accepts
        with pytest.raises(images.ImageError, match="damaged or unsupported JPEG") as info:
            images.read_image(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    grey = write(tmp_path / "grey.jpg", smooth[..., 0], ".jpg")
    assert images.read_image(grey).shape == (96, 96, 3)
    np.testing.assert_array_equal(images.read_image(tmp_path / "full.jpg"),
                                  cv2.cvtColor(cv2.imread(str(tmp_path / "full.jpg")), cv2.COLOR_BGR2RGB))


def test_a_jpeg_announcing_too_many_pixels_is_refused_before_decoding(tmp_path):
    data = bytearray(write(tmp_path / "small.jpg", np.zeros((16, 16, 3), np.uint8), ".jpg").read_bytes())
    frame = data.index(b"\xff\xc0")  # baseline start of frame: precision, height, width
    data[frame + 5 : frame + 9] = (20000).to_bytes(2, "big") * 2
    (tmp_path / "huge.jpg").write_bytes(data)
    for read in (lambda: images.read_image(tmp_path / "huge.jpg"),  # the file's checks, then the decoder's
                 lambda: images.decode_image(np.frombuffer(bytes(data), np.uint8), "huge.jpg")):  # bytes alone
        with pytest.raises(images.ImageError, match="20000x20000 px exceeds the size limit"):
            read()


@pytest.mark.slow
def test_real_photos_decode_to_opencvs_pixels_and_none_is_taken_for_damaged(fgnet_images):
    for path in fgnet_images:  # 175 of them greyscale
        opencv = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        opencv = cv2.cvtColor(opencv, cv2.COLOR_GRAY2RGB if opencv.ndim == 2 else cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(images.read_image(path), opencv, err_msg=path.name)


def test_center_square_resize_and_normalise():
    image = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
    square = images.center_square(image)
    np.testing.assert_array_equal(square, image[:, 2:8])
    assert images.resize(square, 4).shape == (4, 4, 3)
    white = images.normalize(np.full((1, 1, 3), 255, np.uint8))
    np.testing.assert_allclose(white[0, 0], (1 - images.IMAGENET_MEAN) / images.IMAGENET_STD, rtol=1e-6)


def test_real_fgnet_photo_loads(fgnet_images):
    greys = [p for p in fgnet_images if p.name == "001A02.JPG"]
    batch = images.load_for_model(greys[0] if greys else fgnet_images[0], 64)
    assert batch.shape == (64, 64, 3) and batch.dtype == np.float32
    assert -3 < batch.min() < batch.max() < 3


def test_a_pipe_named_like_a_photo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "b.jpg"
    os.mkfifo(fifo)  # opening it for reading blocks until someone writes
    outcome = []

    def read():
        try:
            images.read_photo(str(fifo))
        except images.ImageError as error:
            outcome.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # it blocked: unblock it, then fail
        with open(fifo, "wb"):
            pass
        reader.join(timeout=10)
        pytest.fail("reading a pipe named like a photo blocked")
    assert outcome and "not a regular file" in outcome[0]


def test_a_file_larger_than_any_image_is_refused_from_its_size_before_it_is_read(tmp_path):
    """A 3 GiB sparse file named .jpg was read whole (3.8 GB resident), then called undecodable."""
    sparse = tmp_path / "holiday.jpg"
    with open(sparse, "wb") as handle:
        handle.truncate(3 << 30)  # 3 GiB of holes: nothing on disk
    with pytest.raises(images.ImageError) as info:
        images.read_photo(str(sparse))
    assert "file is 3.0 GiB, more than an image of at most 100,000,000 pixels can be" in info.value.reason
    assert info.value.reason.endswith("refused unread")  # read, it would be "grew past" or undecodable
    assert images.MAX_FILE_BYTES >= 8 * 100_000_000  # a 16-bit RGBA TIFF of the whole budget still fits


def _smooth_photo(height, width, seed=0):
    """A photo-like image: smooth colour fields with some edges, no noise finer than a few pixels."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, height // 64), max(2, width // 64), 3), np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 3)


def test_a_large_jpeg_is_decoded_once_at_the_reduction_its_use_needs(tmp_path):
    """`ScaledPhoto`: the largest DCT reduction keeping the longer side at least `min_side`, its pixels
    those of the full photo shrunk by area (libjpeg-turbo scales in the inverse DCT), pixel i covering
    full pixels [f i, f (i + 1)); the full photo decoded only when asked, equal to `read_image`'s."""
    photo = _smooth_photo(1203, 2001)
    path = write(tmp_path / "big.jpg", photo, ".jpg")
    full = images.read_image(path)
    for min_side, factor in ((2001, 1), (1000, 2), (500, 4), (251, 4), (250, 8), (10, 8)):
        scaled = images.ScaledPhoto(path, min_side)
        assert scaled.factor == factor and scaled.shape == (1203, 2001, 3)
        assert scaled.pixels.shape == (-(-1203 // factor), -(-2001 // factor), 3)
        assert max(scaled.pixels.shape[:2]) >= min(min_side, 2001)
        if factor > 1:
            assert list(scaled._decoded) == [factor]  # the full photo is not decoded until asked
            shrunk = cv2.resize(full[: 1203 // factor * factor, : 2001 // factor * factor],
                                (2001 // factor, 1203 // factor), interpolation=cv2.INTER_AREA)
            difference = np.abs(scaled.pixels[: 1203 // factor, : 2001 // factor].astype(float) - shrunk)
            assert difference.mean() < 1.5 and np.percentile(difference, 99) < 8
        np.testing.assert_array_equal(scaled.full(), full)


def test_small_photos_and_other_formats_are_decoded_whole(tmp_path):
    photo = _smooth_photo(300, 400)
    small = images.ScaledPhoto(write(tmp_path / "small.jpg", photo, ".jpg"), 200)  # 400 = 2 x 200: halved
    assert small.factor == 2
    assert images.ScaledPhoto(tmp_path / "small.jpg", 201).factor == 1
    png = images.ScaledPhoto(write(tmp_path / "big.png", _smooth_photo(1200, 1600), ".png"), 100)
    assert png.factor == 1 and png.pixels.shape == (1200, 1600, 3) and png.full() is png.pixels is png.at(4)


def test_a_reduced_decode_refuses_what_read_photo_refuses(tmp_path):
    """Every coefficient is still read at 1/8: damage inside the data is refused as at full size."""
    data = write(tmp_path / "big.jpg", _smooth_photo(1200, 1600), ".jpg").read_bytes()
    middle = len(data) // 2
    damaged = {"cut.jpg": data[:middle] + b"\xff\xd9", "gap.jpg": data[:middle] + data[middle + 32:]}
    for name, content in damaged.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(images.ImageError, match="damaged or unsupported JPEG"):
            images.read_image(tmp_path / name)
        with pytest.raises(images.ImageError, match="damaged or unsupported JPEG") as info:
            images.ScaledPhoto(tmp_path / name, 100)
        assert str(tmp_path / name) in str(info.value)
    (tmp_path / "truncated.jpg").write_bytes(data[:middle])
    with pytest.raises(images.ImageError, match="truncated JPEG"):
        images.ScaledPhoto(tmp_path / "truncated.jpg", 100)
