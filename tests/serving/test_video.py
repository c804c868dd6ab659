"""Ages in video: one track per face across frames, smoothed ages, annotated video and CSV."""

import csv
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_alage.serving import answers, photos, video
from alage_pipelines import faces, images

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_tracker_follows_a_moving_box_and_starts_new_tracks_for_others():
    tracker = video.Tracker(min_overlap=0.3, max_missed=2)
    first = tracker.assign(0, [np.array([10, 10, 60, 60.0]), np.array([200, 10, 250, 60.0])])
    for track, box in zip(first, ([10, 10, 60, 60.0], [200, 10, 250, 60.0])):
        track.update(0, np.array(box), 30.0, 4.0, tracker.forgetting)
    moved = tracker.assign(1, [np.array([205, 12, 255, 62.0]), np.array([14, 12, 64, 62.0])])
    assert [t.id for t in moved] == [first[1].id, first[0].id]
    for track, box in zip(moved, ([205, 12, 255, 62.0], [14, 12, 64, 62.0])):
        track.update(1, np.array(box), 30.0, 4.0, tracker.forgetting)
    elsewhere = tracker.assign(2, [np.array([400, 300, 450, 350.0])])
    assert elsewhere[0].id not in (first[0].id, first[1].id)
    later = tracker.assign(10, [np.array([14, 12, 64, 62.0])])  # gone for more than max_missed frames
    assert later[0].id not in (first[0].id, first[1].id)


def test_smoothing_weighs_answers_by_their_certainty():
    track = video.Track(0, np.zeros(4), 0, 0)
    rng = np.random.default_rng(0)
    for frame, age in enumerate(30.0 + rng.normal(0, 3, 40)):
        track.update(frame, np.zeros(4), float(age), 3.0, forgetting=0.9)
    assert np.std(track.smoothed_ages[10:]) < 0.5 * np.std(track.raw_ages[10:])
    assert abs(track.age - 30.0) < 2.0
    sure = video.Track(1, np.zeros(4), 0, 0)
    sure.update(0, np.zeros(4), 20.0, 1.0, forgetting=1.0)
    sure.update(1, np.zeros(4), 40.0, 10.0, forgetting=1.0)  # a flat, unsure answer moves it little
    assert sure.age == pytest.approx((20.0 / 1.0 + 40.0 / 100.0) / (1.0 + 1.0 / 100.0))


@pytest.fixture(scope="module")
def panned_video(fgnet_images, tmp_path_factory):
    """20 frames of 320x240 panning and zooming over a real FG-NET photo."""
    photo = images.read_image(fgnet_images[3])
    height, width = photo.shape[:2]
    path = tmp_path_factory.mktemp("video") / "pan.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for i in range(20):
        zoom = 1.0 - 0.01 * i
        w, h = int(width * zoom), int(width * zoom * 0.75)
        x, y = int((width - w) * i / 19), max(0, (height - h) // 2)
        frame = cv2.resize(photo[y : y + h, x : x + w], (320, 240))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_a_panned_face_keeps_one_track_and_its_smoothed_age_jitters_less(panned_video, tiny_model, tmp_path):
    predict = photos.load_predictor(tiny_model, "center")
    output = tmp_path / "drawn.mp4"
    report = video.answer_video(str(panned_video), photos.Answerer(predict, faces.MtcnnDetector(), faces.CropSpec()),
                                str(output))
    assert report.frames == 20 and report.frames_per_second > 0
    assert len(report.tracks) == 1 and report.tracks[0].frames == 20
    track = report.tracks[0]
    assert np.std(track.raw_ages) > 0 and np.std(track.smoothed_ages) < np.std(track.raw_ages)
    written = list(video.frames(str(output)))
    assert len(written) == 20 and written[0][1].shape == (240, 320, 3)
    video.write_tracks(report, str(tmp_path / "tracks.csv"))
    rows = list(csv.DictReader((tmp_path / "tracks.csv").open()))
    assert len(rows) == 1 and int(rows[0]["frames"]) == 20
    assert float(rows[0]["smoothed_age_std"]) < float(rows[0]["per_frame_age_std"])


@pytest.mark.slow
def test_predict_script_reads_videos_beside_photos(panned_video, tiny_model, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), f"--model={tiny_model}",
                             f"--draw={tmp_path}", "--max_frames=5", str(panned_video)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "5 frames" in result.stdout and "track 0:" in result.stdout
    assert (tmp_path / f"pan{video.drawn_codec().extension}").exists() and (tmp_path / "pan.tracks.csv").exists()


def test_an_unreadable_video_is_reported(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="broken.mp4"):
        list(video.frames(str(tmp_path / "broken.mp4")))


def test_a_face_missed_for_up_to_max_missed_frames_keeps_its_track_and_not_one_more():
    box = np.array([10.0, 10.0, 50.0, 50.0])
    tracker = video.Tracker(max_missed=2)

    def seen(frame):
        track = tracker.assign(frame, [box])[0]
        track.update(frame, box, 30.0, 2.0, tracker.forgetting)
        return track

    first = seen(0)
    assert seen(3) is first  # missed in frames 1 and 2: still the same face
    assert seen(7) is not first  # missed in frames 4, 5 and 6: one frame too many, a new face


def test_a_pipe_named_like_a_video_is_skipped_without_being_waited_on(tmp_path):
    """A FIFO named pipe.mp4 was opened by OpenCV, which waited for a writer (photo FIFOs were skipped)."""
    import os
    import threading

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    outcome = []

    def answer():
        logged = []
        outcome.append((video_answered(str(fifo), logged), logged))

    def video_answered(path, logged):
        return answers.answer_video(path, photos.Answerer(None, None, faces.CropSpec()), answers.Outputs(), None,
                                    logged.append)

    worker = threading.Thread(target=answer, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        with open(fifo, "wb"):  # unblock it, then fail
            pass
        pytest.fail("a pipe named like a video was waited on")
    answered, logged = outcome[0]
    assert not answered and logged == [f"{fifo}: skipped ({fifo} is a pipe, not a regular file; refused.)"]


def test_a_claimed_frame_rate_beyond_reason_is_not_trusted():
    # A file claiming 1e6 fps made OpenCV's writer write 0 bytes, reported as written.
    assert video.plausible_rate(1e6) == video.DEFAULT_FRAME_RATE
    assert video.plausible_rate(float("nan")) == video.DEFAULT_FRAME_RATE
    assert video.plausible_rate(0) == video.DEFAULT_FRAME_RATE
    assert video.plausible_rate(29.97) == 29.97


class _Writer:
    """A stand-in for cv2.VideoWriter that opens or not, and writes nothing."""

    def __init__(self, opened):
        self.opened = opened

    def isOpened(self):
        return self.opened

    def write(self, frame):
        pass

    def release(self):
        pass


@pytest.mark.parametrize("opened, reason", [(False, "cannot write"), (True, "wrote nothing")])
def test_a_drawn_video_that_was_not_written_is_refused_and_nothing_is_left(monkeypatch, tmp_path, opened, reason):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    monkeypatch.setattr(video, "drawn_codec", lambda extension=None: video.CODECS[-1])
    monkeypatch.setattr(video.cv2, "VideoWriter", lambda *args: _Writer(opened))

    class NoFaces:
        def detect(self, image):
            return []

    output = tmp_path / "drawn" / "clip.mp4"
    with pytest.raises(ValueError, match=reason):
        video.answer_video(str(clip), photos.Answerer(lambda encoded: {}, NoFaces(), faces.CropSpec()), str(output))
    assert not output.exists() and not [p for p in output.parent.iterdir()]


# --- the drawn video: codec, file mode, intervals ------------------------------------------------------


@pytest.fixture
def codecs_written(monkeypatch):
    """`video.writes` answering from a set of FourCCs (this build's encoders stood in), counted;
    the choice cached before and after the test is left out."""
    video.drawn_codec.cache_clear()
    tried = []

    def use(fourccs):
        monkeypatch.setattr(video, "writes", lambda codec: tried.append(codec.fourcc) or codec.fourcc in fourccs)
        video.drawn_codec.cache_clear()
        return tried

    yield use
    video.drawn_codec.cache_clear()


@pytest.mark.parametrize("fourccs, chosen", [
    ({"avc1", "VP80", "VP90", "mp4v"}, ("avc1", ".mp4")),
    ({"VP80", "VP90", "mp4v"}, ("VP80", ".webm")),
    ({"VP90", "mp4v"}, ("VP90", ".webm")),
])
def test_the_drawn_video_takes_the_first_codec_browsers_play_that_this_build_writes(codecs_written, fourccs, chosen):
    tried = codecs_written(fourccs)
    codec = video.drawn_codec()
    assert (codec.fourcc, codec.extension) == chosen and codec.playable and codec.note is None
    assert video.drawn_codec() is codec and tried.count(chosen[0]) == 1  # tried once


def test_mp4v_is_the_last_resort_and_says_browsers_do_not_play_it(codecs_written):
    codecs_written({"VP80", "mp4v"})
    codec = video.drawn_codec(".mp4")  # an .mp4 asked for: H.264 or nothing browsers play
    assert codec.fourcc == "mp4v" and not codec.playable and "browsers do not play" in codec.note
    assert video.drawn_codec().fourcc == "VP80"
    codecs_written(set())
    with pytest.raises(ValueError, match="writes no video"):
        video.drawn_codec()


def test_this_opencv_build_draws_in_a_codec_browsers_play_where_it_has_one():
    video.drawn_codec.cache_clear()
    codec = video.drawn_codec()
    playable = [c.fourcc for c in video.CODECS if c.playable and video.writes(c)]
    assert codec.playable == bool(playable) and (not playable or codec.fourcc == playable[0]), (codec, playable)


class _OneFace:
    def detect(self, image):
        h, w = image.shape[:2]
        return [(w * 0.3, h * 0.2, w * 0.4, h * 0.5, 0.99)]


def _interval_network(encoded):
    n = len(encoded)
    return {"age": np.full(n, 30.0), "age_std": np.full(n, 2.0), "age_low": np.full(n, 21.0),
            "age_high": np.full(n, 44.0)}


def _clip(path, frames=4):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 80))
    rng = np.random.default_rng(3)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8))
    writer.release()
    return path


FOURCC_READ_AS = {"avc1": {"avc1", "h264", "H264"}, "VP80": {"VP80"}, "VP90": {"VP90"}, "mp4v": {"FMP4", "mp4v"}}


def test_the_drawn_video_is_0644_in_the_chosen_codec_and_labelled_with_the_interval(tmp_path, monkeypatch):
    video.drawn_codec.cache_clear()
    codec = video.drawn_codec()
    labels = []
    real_text = video.cv2.putText
    monkeypatch.setattr(video.cv2, "putText", lambda canvas, text, *rest: labels.append(text) or real_text(
        canvas, text, *rest))
    output = tmp_path / f"drawn{codec.extension}"
    report = video.answer_video(str(_clip(tmp_path / "clip.avi")),
                                photos.Answerer(_interval_network, _OneFace(), faces.CropSpec(size=40)), str(output))
    assert report.codec == codec and report.frames == 4
    assert output.stat().st_mode & 0o777 == 0o644  # a temporary file's 0600 was left on it
    capture = cv2.VideoCapture(str(output))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
    capture.release()
    assert fourcc in FOURCC_READ_AS[codec.fourcc] and len(list(video.frames(str(output)))) == 4
    assert labels == ["#0 30.0 (21-44)"] * 4


def test_a_tracks_interval_is_smoothed_like_its_age_and_written_in_its_row(tmp_path):
    track = video.Track(0, np.zeros(4), 0, 0)
    track.update(0, np.zeros(4), 20.0, 1.0, forgetting=1.0, low=15.0, high=30.0)
    track.update(1, np.zeros(4), 40.0, 2.0, forgetting=1.0, low=31.0, high=55.0)
    weights = np.array([1.0, 1.0 / 4.0])  # 1 / std^2, as the age
    assert track.age == pytest.approx(weights @ [20.0, 40.0] / weights.sum())
    assert (track.age_low, track.age_high) == pytest.approx((weights @ [15.0, 31.0] / weights.sum(),
                                                             weights @ [30.0, 55.0] / weights.sum()))
    assert track.age_text == f"{track.age:.1f} ({track.age_low:.0f}-{track.age_high:.0f})"
    plain = video.Track(1, np.zeros(4), 0, 0)
    plain.update(0, np.zeros(4), 33.0, 2.0, forgetting=0.9)  # a model without an interval
    assert plain.age_low is None and plain.age_text == "33.0"
    video.write_tracks(video.VideoReport(2, 1.0, [track, plain]), str(tmp_path / "tracks.csv"))
    rows = list(csv.DictReader((tmp_path / "tracks.csv").open()))
    assert [(r["age"], r["age_low"], r["age_high"]) for r in rows] == [
        (f"{track.age:.2f}", f"{track.age_low:.2f}", f"{track.age_high:.2f}"), ("33.00", "", "")]


def test_an_answer_with_a_non_finite_interval_moves_no_track(tmp_path):
    def network(encoded):
        return _interval_network(encoded) | {"age_high": np.full(len(encoded), np.inf)}

    report = video.answer_video(str(_clip(tmp_path / "clip.avi", 2)), photos.Answerer(network, _OneFace(),
                                                                                       faces.CropSpec(size=40)))
    assert [t.frames for t in report.tracks] == []


def test_a_face_refused_in_a_photo_for_any_non_finite_answer_moves_no_track_either(tmp_path):
    """Video refused a face only for a non-finite age or interval: a nan faceres_age (a member's
    answer) moved its track while a photo refused it. Both now refuse through `photos.non_finite`."""
    answered = []

    def network(encoded):
        n = len(encoded)
        members = np.array([np.nan if len(answered) + i == 1 else 31.0 for i in range(n)])  # the second face
        answered.extend(encoded)
        return _interval_network(encoded) | {"faceapi_age": np.full(n, 29.0), "faceres_age": members}

    report = video.answer_video(str(_clip(tmp_path / "clip.avi", 3)), photos.Answerer(network, _OneFace(),
                                                                                       faces.CropSpec(size=40)))
    assert len(answered) == 3
    refused = {"age": [30.0], "faceapi_age": [29.0], "faceres_age": [np.nan]}  # the second face's answer
    assert photos.non_finite(refused, 0) == "the model answered faceres_age nan"  # refused in a photo
    assert [(t.frames, t.raw_ages) for t in report.tracks] == [(2, [30.0, 30.0])]


def test_frames_are_searched_ahead_of_the_network_and_answered_together_with_the_same_tracks(tmp_path):
    """The next frames' detection overlaps the network (a worker thread), whose calls take the faces of
    every frame ready: with a slow network, calls hold several frames' faces; tracks and ages are
    those of one frame at a time (each answer depends on its own crop only)."""
    import time

    clip = str(_clip(tmp_path / "clip.avi", 24))

    def network(sizes, delay):
        def answer(encoded):
            sizes.append(len(encoded))
            time.sleep(delay)
            ages = np.array([images.decode_image(np.frombuffer(e, np.uint8)).mean() / 4.0 for e in encoded])
            return {"age": ages, "age_std": np.full(len(encoded), 2.0)}
        return answer

    slow, quick = [], []
    batched = video.answer_video(clip, photos.Answerer(network(slow, 0.1), _OneFace(), faces.CropSpec(size=40)))
    serial = video.answer_video(clip, photos.Answerer(network(quick, 0.0), _OneFace(), faces.CropSpec(size=40)))
    assert sum(slow) == sum(quick) == 24 and max(slow) > 1 and len(slow) < 24
    assert [(t.id, t.frames, t.raw_ages, t.smoothed_ages) for t in batched.tracks] == [
        (t.id, t.frames, t.raw_ages, t.smoothed_ages) for t in serial.tracks]
    assert len(batched.tracks) == 1 and batched.tracks[0].frames == 24
    with pytest.raises(ValueError, match="cannot be opened"):  # the worker's error, raised to the caller
        video.answer_video(str(tmp_path / "missing.avi"), photos.Answerer(network([], 0.0), _OneFace(),
                                                                           faces.CropSpec(size=40)))


class _ThreeFaces:
    """Three faces side by side in every frame."""

    def detect(self, image):
        h, w = image.shape[:2]
        return [(w * x, h * 0.3, w * 0.2, h * 0.4, 0.99) for x in (0.05, 0.4, 0.75)]


@pytest.mark.parametrize("batch_faces", [1, 2, 5])
def test_a_video_is_answered_batch_faces_at_a_time_like_photos(tmp_path, batch_faces):
    """Video kept its own batch of 32 and sent a batch's faces in one call whatever
    `Answerer.batch_faces`: it now goes through the photos' batching (`photos.answer_located`), so no
    call takes more than batch_faces faces, and the answers are those of one face at a time."""
    clip = str(_clip(tmp_path / "clip.avi", 6))

    def network(sizes):
        def answer(encoded):
            sizes.append(len(encoded))
            ages = np.array([images.decode_image(np.frombuffer(e, np.uint8)).mean() / 4.0 for e in encoded])
            return {"age": ages, "age_std": np.full(len(encoded), 2.0)}
        return answer

    sizes, single = [], []
    spec = faces.CropSpec(size=40)
    batched = video.answer_video(clip, photos.Answerer(network(sizes), _ThreeFaces(), spec, batch_faces=batch_faces))
    one_by_one = video.answer_video(clip, photos.Answerer(network(single), _ThreeFaces(), spec, batch_faces=1))
    assert sum(sizes) == 18 and max(sizes) <= batch_faces and single == [1] * 18
    assert [(t.id, t.frames, t.raw_ages) for t in batched.tracks] == [
        (t.id, t.frames, t.raw_ages) for t in one_by_one.tracks]
    assert len(batched.tracks) == 3
