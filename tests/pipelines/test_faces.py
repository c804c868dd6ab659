import pathlib

import cv2
import numpy as np
import pytest

from keras_alage.serving import photos
from alage_pipelines import faces, images


class DotDetector:
    """Finds the brightest pixel of the canvas and reports a box around it.

    `confidence_at` maps search angles to the score reported (none: no face); calls come
    in `SEARCH_ANGLES` order, which is how the detector knows the angle.
    """

    name = "dot"

    def __init__(self, confidence_at=None, box=(40, 60)):
        self.calls = []
        self.confidence_at = confidence_at or {}
        self.box = box

    def detect(self, canvas):
        angle = faces.SEARCH_ANGLES[len(self.calls)]
        self.calls.append(canvas.shape)
        confidence = self.confidence_at.get(angle)
        if confidence is None:
            return []
        y, x = np.unravel_index(np.argmax(canvas[..., 0]), canvas.shape[:2])
        w, h = self.box
        return [(x - (w - 1) / 2.0, y - (h - 1) / 2.0, w, h, confidence)]


def _dot_image(x=130, y=70, shape=(150, 220)):
    image = np.zeros(shape + (3,), np.uint8)
    image[y - 1 : y + 2, x - 1 : x + 2] = 255  # 3x3 so interpolation keeps the peak
    return image


def test_the_rotation_set_is_the_papers():
    assert len(faces.SEARCH_ANGLES) == 28 and len(faces.ROTATIONS) == 27
    assert faces.SEARCH_ANGLES[0] == 0.0
    assert set(faces.ROTATIONS) == set(range(-60, 65, 5)) - {0} | {-90, 90, 180}


@pytest.mark.parametrize("angle", [0.0, 25.0, -60.0, 90.0, 180.0])
def test_faces_found_on_rotated_canvases_map_back_to_the_photo(angle):
    image = _dot_image()
    detector = DotDetector({angle: 0.99})
    detector.calls = [None] * faces.SEARCH_ANGLES.index(angle)
    (face,) = faces.detect_at(image, detector, angle)
    assert face.center == pytest.approx((130, 70), abs=1.0)
    assert (face.angle, face.method) == (angle, "upright" if angle == 0 else "rotated")


def test_upright_confident_face_ends_the_search():
    detector = DotDetector({0.0: 0.95})
    face, calls = faces.find_face(_dot_image(), detector, min_confidence=0.9)
    assert calls == 1 and len(detector.calls) == 1 and face.method == "upright"


def test_weak_or_missing_upright_face_searches_every_rotation_and_keeps_the_strongest():
    detector = DotDetector({0.0: 0.7, 30.0: 0.97, -90.0: 0.93})
    face, calls = faces.find_face(_dot_image(), detector, min_confidence=0.9)
    assert calls == 28 and face.angle == 30.0 and face.confidence == 0.97
    assert face.center == pytest.approx((130, 70), abs=1.0)

    nothing, calls = faces.find_face(_dot_image(), DotDetector({}), min_confidence=0.9)
    assert nothing is None and calls == 28


def test_full_search_is_forced_by_the_flag():
    detector = DotDetector({0.0: 0.95, 180.0: 0.99})
    face, calls = faces.find_face(_dot_image(), detector, full_search=True)
    assert calls == 28 and face.angle == 180.0


def test_upright_crop_is_the_enlarged_square_box_resized():
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (400, 300), interpolation=cv2.INTER_LINEAR)
    spec = faces.CropSpec(size=64, margin=0.4)
    face = faces.Face((199.5, 149.5), (80.0, 100.0))  # square side 100 -> 140 with the margin
    crop = faces.crop_face(image, face, spec)
    expected = cv2.resize(image[80:220, 130:270], (64, 64), interpolation=cv2.INTER_AREA)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert np.abs(crop.astype(int) - expected).mean() < 2.0

    unsquared = faces.crop_face(image, face, faces.CropSpec(size=64, margin=0.4, square=False))
    expected = cv2.resize(image[80:220, 144:256], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(unsquared.astype(int) - expected).mean() < 2.0


def test_center_face_crops_the_centre_square():
    image = _dot_image(shape=(120, 200))
    image[:, 40:160, 1] = 200
    spec = faces.CropSpec(size=32)
    crop = faces.crop_face(image, faces.center_face(image.shape, spec), spec)
    expected = images.resize(images.center_square(image), 32)
    assert np.abs(crop.astype(int) - expected).mean() < 3.0


def test_crop_spec_and_policy_reject_bad_settings():
    with pytest.raises(ValueError, match="crop size"):
        faces.CropSpec(size=0)
    with pytest.raises(ValueError, match=r"crop margin must lie in \[-0.5, 4\]; received -0.6"):
        faces.CropSpec(margin=-0.6)
    with pytest.raises(ValueError, match="no_face"):
        faces.FacePolicy(no_face="drop")


def test_detection_cache_skips_detection_and_keys_on_settings(tmp_path):
    cache = faces.DetectionCache(tmp_path)
    policy = faces.FacePolicy(min_confidence=0.9)
    image, data = _dot_image(), b"photo bytes"
    detector = DotDetector({0.0: 0.95})
    first, calls = faces.locate_face(image, data, policy, faces.CropSpec(), detector, cache)
    assert calls == 1
    again, calls = faces.locate_face(image, data, policy, faces.CropSpec(), DotDetector({}), cache)
    assert calls == 0 and again == first
    stricter = faces.FacePolicy(min_confidence=0.99)
    assert cache.key(data, stricter.cache_settings(detector)) != cache.key(data, policy.cache_settings(detector))
    # A photo with no face is cached as such, then skipped or centre-cropped by the policy.
    with pytest.raises(faces.NoFaceError):
        faces.locate_face(image, b"empty", policy, faces.CropSpec(), DotDetector({}), cache)
    center = faces.FacePolicy(no_face="center")
    face, calls = faces.locate_face(image, b"empty", center, faces.CropSpec(), DotDetector({}), None)
    assert face.method == "center" and calls == 28


@pytest.mark.slow
def test_mtcnn_finds_an_upside_down_face_and_crops_it_upright(fgnet_images):
    photo = images.read_image(fgnet_images[0])  # 001A02.JPG
    detector = faces.MtcnnDetector()
    spec = faces.CropSpec(size=128)
    upright, calls = faces.find_face(photo, detector)
    assert upright.method == "upright" and upright.confidence > 0.9 and calls == 1
    flipped = np.ascontiguousarray(photo[::-1, ::-1])  # the photo turned by 180 degrees
    found, calls = faces.find_face(flipped, detector)
    assert found.method == "rotated" and abs(found.angle) in (180.0, 175.0, 170.0)
    original = faces.crop_face(photo, upright, spec).astype(float)
    recovered = faces.crop_face(flipped, found, spec).astype(float)
    unrelated = faces.crop_face(photo, faces.center_face(photo.shape, spec), spec)[::-1].astype(float)
    same = np.corrcoef(original.ravel(), recovered.ravel())[0, 1]
    assert same > 0.8 and same > np.corrcoef(original.ravel(), unrelated.ravel())[0, 1] + 0.2


class BoxDetector:
    """Reports one centred box of a fixed share of the image's side, or nothing."""

    def __init__(self, shares):
        self.shares = list(shares)

    def detect(self, image):
        share = self.shares.pop(0)
        if share is None:
            return []
        side = image.shape[0]
        return [(0.0, 0.0, 0.75 * share * side, share * side, 0.99)]


def test_matching_margin_inverts_the_median_face_share():
    crops = [np.zeros((100, 100, 3), np.uint8)] * 4
    estimate = faces.matching_margin(crops, BoxDetector([0.8, 0.5, None, 0.9]))
    assert estimate.face_fraction == pytest.approx(0.8) and estimate.margin == pytest.approx(0.25)
    assert (estimate.measured, estimate.without_face) == (3, 1)
    with pytest.raises(ValueError, match="No face with confidence >= 0.9 in any of the 2 crops"):
        faces.matching_margin(crops[:2], BoxDetector([None, None]))


def test_matching_margin_recovers_the_margin_fgnet_crops_were_cut_with(fgnet_images):
    detector = faces.MtcnnDetector()
    spec = faces.CropSpec(size=160, margin=0.3)
    crops = []
    for path in fgnet_images[:6]:
        photo = images.read_image(path)
        face, _ = faces.find_face(photo, detector)
        crops.append(faces.crop_face(photo, face, spec))
    estimate = faces.matching_margin(crops, detector)
    assert estimate.measured >= 5 and estimate.margin == pytest.approx(0.3, abs=0.05)


def test_measure_crop_margin_script_names_a_glob_that_matches_nothing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "measure_crop_margin.py"
    result = subprocess.run([sys.executable, str(script), f"--images={tmp_path}/*.jpg"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "matches no file" in result.stderr


def test_crop_record_round_trips_and_names_a_bad_file(tmp_path):
    spec = faces.CropSpec(size=200, margin=0.04)
    faces.write_crop_spec(str(tmp_path), spec)
    assert faces.read_crop_spec(str(tmp_path)) == spec
    assert faces.read_crop_spec(str(tmp_path / "elsewhere")) is None
    (tmp_path / faces.CROP_FILE).write_text('{"size": 200, "margin": 9}')
    with pytest.raises(ValueError, match=r"face_crop.json: not a face-crop record \(crop margin must lie"):
        faces.read_crop_spec(str(tmp_path))


def test_only_builds_that_detected_faces_record_their_crop():
    crop = {"size": 256, "margin": 0.04, "square": True}
    assert faces.crop_of_build({"face_policy": {"detect": True}, "crop": crop}) == faces.CropSpec(256, 0.04)
    # Ready-made crops (UTKFace's chips) are used whole: their cut is the source's, not the margin's.
    assert faces.crop_of_build({"face_policy": {"detect": False}, "crop": crop}) is None


# --- dlib's HOG detector with 5-point alignment ---------------------------------------

SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "samples" / "astronaut_eileen_collins.jpg"


@pytest.fixture(scope="module")
def dlib_detector():
    pytest.importorskip("dlib", reason="the dlib detector needs dlib-bin (a dependency of keras-alage)")
    try:
        faces.find_landmark_model()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return faces.DlibDetector()


def _rotated(image, angle):
    return faces._rotate_expanded(image, angle)[0]


def test_dlib_box_is_dlibs_own_aligned_chip_on_a_tilted_face(dlib_detector):
    """Our crop of a dlib face at margin 0.4 is dlib's face chip at padding 0.2 (its age
    network's and UTKFace's cut): same centre, size and roll, whatever way the face is tilted."""
    import dlib

    photo = images.read_image(str(SAMPLE))
    largest = lambda found: max(found, key=lambda f: f.size[0])  # noqa: E731
    upright = largest(faces.detect_at(photo, dlib_detector, faces.UPRIGHT))
    assert upright.confidence > 0
    _, detector, landmarks = dlib_detector._load()
    for tilt in (-20.0, 15.0):
        tilted = np.ascontiguousarray(_rotated(photo, tilt))
        face = largest(faces.detect_at(tilted, dlib_detector, faces.UPRIGHT))
        # The roll found undoes the tilt (a photo turned by `tilt` is turned back by -tilt),
        # on top of the face's own roll.
        assert face.angle == pytest.approx(upright.angle - tilt, abs=2.0)
        ours = faces.crop_face(tilted, face, faces.CropSpec(64, 0.4, detector="dlib")).astype(float)
        shape = landmarks(tilted, max(detector(tilted, 1), key=lambda r: r.area()))
        chip = dlib.extract_image_chip(tilted, dlib.get_face_chip_details(shape, 64, 0.2)).astype(float)
        assert np.abs(ours - chip).mean() < 6.0  # interpolation differs; a 1-degree or 1-px error gives > 8
        assert face.size[0] == pytest.approx(face.size[1])


def test_dlib_detector_crops_utkface_chips_as_they_were_cut(dlib_detector, shared_data):
    """UTKFace's aligned chips are dlib chips: the face box is 1 / 1.37 of the chip, no roll."""
    paths = sorted((shared_data / "utkface" / "crop_part1").glob("*.jpg"))[:40]
    chips = [images.read_image(str(p)) for p in paths]
    estimate = faces.matching_margin(chips, dlib_detector, min_confidence=0.0)
    assert estimate.measured >= 30
    assert estimate.margin == pytest.approx(0.37, abs=0.05)
    rolls = [f.angle for chip in chips[:10] for f in faces.detect_at(chip, dlib_detector, faces.UPRIGHT)]
    assert np.median(np.abs(rolls)) < 3.0


def test_each_detector_has_its_own_confidence_scale():
    assert faces.FacePolicy().confidence(faces.DlibDetector()) == 0.2
    assert faces.FacePolicy().confidence(faces.MtcnnDetector()) == 0.9
    assert faces.FacePolicy(min_confidence=0.5).confidence(faces.DlibDetector()) == 0.5
    assert faces.FacePolicy().cache_settings(faces.DlibDetector()) != faces.FacePolicy().cache_settings(
        faces.MtcnnDetector())
    # Another upsampling finds other faces: cached detections never cross between them.
    assert faces.FacePolicy().cache_settings(faces.DlibDetector(upsample=1)) != faces.FacePolicy().cache_settings(
        faces.DlibDetector())
    with pytest.raises(ValueError, match="unknown face detector 'hog'"):
        faces.make_detector("hog")


def test_a_crop_names_the_detector_its_margin_belongs_to():
    spec = faces.CropSpec(64, 0.4, detector="dlib")
    assert faces.CropSpec.from_json(spec.to_json()) == spec
    # Crops recorded before detectors were named were MTCNN's.
    assert faces.CropSpec.from_json({"size": 256, "margin": 0.04, "square": True}).detector == "mtcnn"
    with pytest.raises(ValueError, match="crop detector must be one of"):
        faces.CropSpec(detector="hog")


def test_a_crop_translates_between_detectors_through_their_boxes_on_the_same_chips():
    # On UTKFace's chips MTCNN's box is 1/1.04 of the chip and dlib's 1/1.372: the release's
    # dlib crop at margin 0.6 (1.166 chips) is MTCNN's box plus 21.3%.
    spec = faces.CropSpec(256, 0.6, detector="dlib")
    mtcnn = faces.translate_crop(spec, "mtcnn", {"dlib": 0.372, "mtcnn": 0.04})
    assert mtcnn.detector == "mtcnn" and mtcnn.size == 256
    assert mtcnn.margin == pytest.approx(1.6 / 1.372 * 1.04 - 1.0)
    back = faces.translate_crop(mtcnn, "dlib", {"dlib": 0.372, "mtcnn": 0.04})
    assert back.margin == pytest.approx(0.6)
    assert faces.translate_crop(spec, "dlib", {}) == spec
    with pytest.raises(ValueError, match="no measured chip margin"):
        faces.translate_crop(spec, "mtcnn", {"dlib": 0.372})


class FixedDetector:
    def __init__(self, name, detections):
        self.name, self.detections, self.calls = name, detections, 0

    def detect(self, image):
        self.calls += 1
        return list(self.detections)


def test_the_fallback_detector_looks_only_where_the_first_finds_nothing_and_speaks_its_box_size():
    image = np.zeros((200, 200, 3), np.uint8)
    confident = FixedDetector("dlib", [(50.0, 40.0, 60.0, 60.0, 1.3, 2.0)])
    second = FixedDetector("mtcnn", [(20.0, 30.0, 80.0, 100.0, 0.99)])
    assert faces.FallbackDetector(confident, second).detect(image) == confident.detections and second.calls == 0
    weak = FixedDetector("dlib", [(0.0, 0.0, 30.0, 30.0, 0.05)])  # below dlib's 0.2: not a face
    fallback = faces.FallbackDetector(weak, second)
    found = fallback.detect(image)
    assert second.calls == 1 and len(found) == 2
    x, y, w, h, score = found[1]
    side = 100.0 * faces.CHIP_BOX_FRACTIONS["dlib"] / faces.CHIP_BOX_FRACTIONS["mtcnn"]  # square on the longer side
    assert (w, h) == pytest.approx((side, side)) and score >= 0.99
    assert (x + (w - 1) / 2, y + (h - 1) / 2) == pytest.approx((20 + 79 / 2, 30 + 99 / 2))  # the same centre
    (face,) = photos_find(image, fallback)
    assert face.size == pytest.approx((side, side)) and face.angle == 0.0
    # Cached detections never mix with the primary's alone.
    assert faces.FacePolicy().cache_settings(fallback) != faces.FacePolicy().cache_settings(weak)


def photos_find(image, detector):
    return photos.find_faces(image, detector)


# --- a bounded cost per photo ------------------------------------------------------------------------


def test_a_large_photo_is_searched_on_a_bounded_copy_and_its_face_mapped_back():
    """A 10000 x 10000 photo held dlib's detector for minutes: every detector call, upright and
    rotated, sees at most DETECTION_MAX_SIDE px; the face comes back in the full photo's pixels."""
    image = np.zeros((3000, 4000, 3), np.uint8)
    y, x = np.mgrid[-60:61, -60:61]
    image[940:1061, 2940:3061] = (255 * np.exp(-(x ** 2 + y ** 2) / 800.0))[..., None]  # one peak at (3000, 1000)
    detector = DotDetector({0.0: 0.5, 30.0: 0.95}, box=(40, 40))
    face, calls = faces.find_face(image, detector, min_confidence=0.9)
    assert calls == 28 and max(max(shape[:2]) for shape in detector.calls) <= 1.5 * faces.DETECTION_MAX_SIDE
    assert max(detector.calls[0][:2]) == faces.DETECTION_MAX_SIDE  # the upright canvas is the copy itself
    assert face.center == pytest.approx((3000, 1000), abs=2.5)  # a pixel of the copy
    assert face.size == pytest.approx((100, 100))  # 40 px in the copy at scale 0.4
    upright = photos.find_faces(image, DotDetector({0.0: 0.95}, box=(40, 40)))
    assert [f.center for f in upright] == [pytest.approx((3000, 1000), abs=2.5)]


def test_a_photo_within_the_bound_is_searched_as_it_is(dlib_detector):
    """FG-NET's and UTKFace's photos are far within the bound: their boxes are exactly as before."""
    photo = images.read_image(str(SAMPLE))
    assert max(photo.shape[:2]) <= faces.DETECTION_MAX_SIDE
    copy, scale = faces.detection_copy(photo)
    assert copy is photo and scale == 1.0
    before = [f for f in faces.detect_at(photo, dlib_detector, faces.UPRIGHT) if f.confidence >= 0.2]
    assert before and photos.find_faces(photo, dlib_detector) == sorted(before, key=lambda f: f.center[0])


@pytest.mark.parametrize("shape", [(1, 100000), (100000, 1), (20, 4000)])
def test_a_strip_too_thin_for_a_face_is_refused_before_any_detector_sees_it(shape):
    """A 1 x 100000 PNG made OpenCV assert inside MTCNN's resize, ending the whole run."""
    strip = np.full(shape + (3,), 120, np.uint8)
    with pytest.raises(faces.NarrowPhoto, match=f"{shape[1]}x{shape[0]} px is too narrow"):
        photos.find_faces(strip, faces.MtcnnDetector())  # its resize asserts before its model loads
    with pytest.raises(faces.NarrowPhoto):
        faces.find_face(strip, DotDetector({}))


def test_the_build_stores_no_face_under_the_minimum_size():
    """A 1 px "face" (the centre of a 1 x 100000 chip, or a detector's speck) is never a record."""
    chip = np.full((1, 2000, 3), 120, np.uint8)
    with pytest.raises(faces.NoFaceError, match="under the 16 px minimum"):
        faces.locate_face(chip, b"chip", faces.FacePolicy(detect=False), faces.CropSpec(), None, None)
    with pytest.raises(faces.NoFaceError, match="too narrow to hold a face"):
        faces.locate_face(chip, b"chip", faces.FacePolicy(no_face="skip"), faces.CropSpec(), DotDetector({}), None)
    speck = DotDetector({0.0: 0.99}, box=(8, 8))
    with pytest.raises(faces.NoFaceError, match="face of 8x8 px is under"):
        faces.locate_face(_dot_image(), b"photo", faces.FacePolicy(), faces.CropSpec(), speck, None)
    face, _ = faces.locate_face(_dot_image(), b"photo", faces.FacePolicy(), faces.CropSpec(),
                                DotDetector({0.0: 0.99}, box=(16, 16)), None)
    assert face.size == (16, 16)


def test_a_cached_detection_of_a_large_photo_is_keyed_on_the_bounded_copy(tmp_path):
    """Detections cached before the bound were made on the full photo: they are not reused for one."""
    cache = faces.DetectionCache(tmp_path)
    policy = faces.FacePolicy(min_confidence=0.9)
    large = np.zeros((1000, faces.DETECTION_MAX_SIDE + 1, 3), np.uint8)
    large[500, 500] = 255
    old_key = cache.key(b"large", policy.cache_settings(DotDetector()))
    cache.put(old_key, faces.Face((1.0, 1.0), (50.0, 50.0), confidence=0.99))
    face, calls = faces.locate_face(large, b"large", policy, faces.CropSpec(), DotDetector({0.0: 0.95}), cache)
    assert calls == 1 and face.center != (1.0, 1.0)
    small = _dot_image()
    cache.put(cache.key(b"small", policy.cache_settings(DotDetector())), faces.Face((1.0, 1.0), (50.0, 50.0)))
    assert faces.locate_face(small, b"small", policy, faces.CropSpec(), DotDetector({}), cache)[1] == 0


# --- faces boxed from keypoints (BlazeFace) ---------------------------------------------------------


def _keypoints_of(face, template):
    """Photo-pixel keypoints of a face box whose chip holds `template` (chip sides from its centre)."""
    theta = np.deg2rad(face.angle)
    rotation = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])  # Face.corners'
    return np.asarray(template) * face.size[0] @ rotation + np.asarray(face.center)


@pytest.mark.parametrize("roll", [0.0, 17.0, -35.0, 170.0])
def test_the_chip_fitted_to_keypoints_is_the_box_they_came_from(roll):
    template = np.asarray(faces.CHIP_KEYPOINTS["short"])
    face = faces.Face((310.0, 205.0), (150.0, 150.0), roll)
    points = _keypoints_of(face, template)
    (cx, cy), side, fitted_roll = faces.chip_of_keypoints(points, template)
    assert (cx, cy) == pytest.approx(face.center, abs=1e-6) and side == pytest.approx(150.0)
    assert (fitted_roll - roll + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(faces.keypoints_in_chip(points, face), template, atol=1e-9)
    # the crop undoes the roll: the eyes land level, left of centre and right of it, above the mouth
    spec = faces.CropSpec(256, 0.6, detector="blazeface")
    in_crop = faces.crop_to_photo(face, spec, 0.5 + template / 1.6)
    np.testing.assert_allclose(in_crop, points, atol=0.51)


def test_a_keypoint_detector_reports_dlib_like_chips_through_the_search():
    """Its detections go through `detect_at` as dlib's do: a face on a canvas turned by 30 degrees
    comes back in the photo's pixels with the roll that makes it upright."""
    template = np.asarray(faces.CHIP_KEYPOINTS["short"])
    truth = faces.Face((200.0, 150.0), (90.0, 90.0), 12.0)

    def find(canvas):  # the face's keypoints wherever the canvas put them
        return {"keypoints": np.asarray([np.pad(_keypoints_of(seen, template), ((0, 2), (0, 0)))]),
                "scores": np.asarray([0.9])}

    detector = faces.KeypointDetector(find)
    image = np.zeros((300, 400, 3), np.uint8)
    seen = truth
    face = faces.detect_at(image, detector, faces.UPRIGHT)[0]
    assert face.center == pytest.approx(truth.center, abs=1e-6) and face.size == pytest.approx(truth.size)
    assert face.angle == pytest.approx(12.0) and face.confidence == pytest.approx(0.9)
    canvas, matrix = faces._rotate_expanded(image, 30.0)
    centre = matrix @ np.array([*truth.center, 1.0])
    seen = faces.Face(tuple(centre), truth.size, truth.angle - 30.0)  # the canvas turned the face by -30
    face = faces.detect_at(image, detector, 30.0)[0]
    assert face.center == pytest.approx(truth.center, abs=1e-6) and face.angle == pytest.approx(12.0)
    assert faces.same_boxes("blazeface", "dlib") and not faces.same_boxes("blazeface", "mtcnn")
    # the same boxes: a fallback rescales to blazeface's box as to dlib's, and a dlib crop is cut with blazeface
    assert faces.CHIP_BOX_FRACTIONS["blazeface"] == faces.CHIP_BOX_FRACTIONS["dlib"]
    assert faces.FACE_PATH_DETECTOR == {"dlib": "blazeface"}
    with pytest.raises(ValueError, match="runs BlazeFace in TensorFlow"):
        faces.make_detector("blazeface")
