"""The networks' arithmetic (`serving.precision`): the commands' --precision is the library's option
list, bfloat16 is refused in one line where the CPU lacks it, and where the CPU has it the option is
really set, answers move a little, and the process is left in float32.

The option is the process's: every test that sets it restores float32 (`float32_after`), so the rest
of the suite answers as documented."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.serving import options, precision
from keras_alage.studies import benchmarking
from keras_alage.studies.benchmarks import face_path, photo_path
from alage_pipelines import faces
from tests.cli import in_process

native = pytest.mark.skipif(not precision.native_bfloat16(), reason="this CPU has no native bfloat16")


@pytest.fixture
def float32_after():
    """The process back in float32 after the test, whatever it set."""
    yield
    tf.config.optimizer.set_experimental_options({precision.BFLOAT16_OPTION: False})
    assert precision.current() == "float32"


@pytest.fixture
def no_bfloat16(monkeypatch):
    """A CPU whose flags hold no bfloat16."""
    monkeypatch.setattr(precision, "cpu_flags", lambda path=precision.CPUINFO: frozenset({"fpu", "avx2", "avx512f"}))


def one_line(result, script):
    ours = [line for line in result.stderr.splitlines() if line.startswith(f"{script}:")]
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(ours) == 1, result.stderr[-2000:]
    return ours[0]


@pytest.mark.parametrize("script", ["predict.py", "serve.py"])
def test_the_commands_precision_flag_offers_the_librarys_options_and_defaults_to_float32(script, monkeypatch):
    monkeypatch.setattr(options, "PRECISIONS", ("float32", "bfloat16", "float8"))  # read when the flags are built
    result = in_process.run_script(script, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    listing = result.stdout[result.stdout.index("--precision:"):]
    assert listing.startswith("--precision: <float32|bfloat16|float8>:"), listing[:200]
    assert "(default: 'float32')" in listing[:600], listing[:600]


def test_cpu_flags_are_read_from_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: a CPU\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n\n")
    assert precision.cpu_flags(str(info)) == {"fpu", "avx512f", "amx_bf16", "amx_tile"}
    assert precision.cpu_flags(str(tmp_path / "none")) == frozenset()  # another OS: no bfloat16 claimed


def test_bfloat16_is_refused_on_a_cpu_without_it_and_nothing_is_set(no_bfloat16, float32_after):
    with pytest.raises(precision.NoNativeBfloat16) as refused:
        precision.set_precision("bfloat16")
    assert "\n" not in str(refused.value) and "no native bfloat16" in str(refused.value)
    assert "float32 is the choice" in str(refused.value)
    assert not tf.config.optimizer.get_experimental_options().get(precision.BFLOAT16_OPTION)
    precision.set_precision("float32")  # float32 is always there
    with pytest.raises(ValueError, match="one of"):
        precision.set_precision("float16")


@pytest.mark.parametrize("script, args", [("predict.py", ["photo.jpg"]), ("serve.py", ["--model_base_path=nowhere"])])
def test_a_command_asked_for_bfloat16_on_a_cpu_without_it_says_so_in_one_line(script, args, no_bfloat16,
                                                                               float32_after):
    line = one_line(in_process.run_script(script, "--precision=bfloat16", *args), script)
    assert "--precision=bfloat16: this CPU has no native bfloat16" in line, line
    assert precision.current() == "float32"


def tiny_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                             keras.layers.Conv2D(16, 3), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])


@native
def test_bfloat16_sets_the_option_and_moves_answers_a_little_and_float32_restores_them(float32_after):
    model = tiny_model()
    answer = tf.function(lambda images: model(images, training=False))
    images = tf.constant(np.random.default_rng(0).uniform(0.0, 1.0, (8, 32, 32, 3)).astype(np.float32))
    reference = answer(images).numpy()
    with precision.using("bfloat16"):
        assert tf.config.optimizer.get_experimental_options()[precision.BFLOAT16_OPTION] is True
        assert precision.current() == "bfloat16"
        moved = answer(images).numpy()  # the same function, traced in float32: the option is read at each call
    assert precision.current() == "float32"
    scale = np.abs(reference).max()
    assert 0.0 < np.abs(moved - reference).max() <= max(0.05 * scale, 1e-6), np.abs(moved - reference).max() / scale
    np.testing.assert_array_equal(answer(images).numpy(), reference)


def stand_in_server():
    """A serving graph's shape (`serve_encoded`: encoded crops -> age and interval) over a tiny network."""
    model = tiny_model()

    class Server(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve_encoded(self, encoded):
            images = tf.map_fn(lambda e: tf.cast(tf.io.decode_jpeg(e, channels=3), tf.float32) / 255.0, encoded,
                               fn_output_signature=tf.TensorSpec([32, 32, 3], tf.float32))
            age = 30.0 + 100.0 * tf.reduce_sum(model(images, training=False), axis=1)
            return {"age": age, "age_low": age - 5.0, "age_high": age + 5.0}

    return Server()


@native
def test_the_precision_study_answers_every_face_in_each_precision_paired_over_people(monkeypatch, float32_after):
    rng = np.random.default_rng(1)
    encoded = [faces.encode_jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(12)]
    truth = np.arange(20.0, 32.0)
    pop = {"encoded": encoded, "truth": truth, "low": truth, "high": truth,
           "subject": np.repeat(np.array(["a", "b", "c", "d"]), 3)}
    server = stand_in_server()
    monkeypatch.setattr(face_path.release, "open_model_path", lambda path: path)
    monkeypatch.setattr(face_path.photos, "serving_module", lambda opened: server)
    monkeypatch.setattr(face_path.three_networks, "population_faces", lambda name, build, parts: pop)
    seen = []
    report = face_path.score_precision("release", {"fgnet": ("build", None)}, log=seen.append)
    rows = report["populations"]["fgnet"]["precisions"]
    assert list(rows) == ["float32", "bfloat16"] and report["populations"]["fgnet"]["people"] == 4
    assert precision.current() == "float32"
    float32 = face_path.served_answers(server, encoded)["age"]  # this process, float32: the reference
    errors = np.abs(float32 - truth)
    assert rows["float32"]["error"] == pytest.approx(errors.mean())
    assert 0.0 < rows["bfloat16"]["age_change_max"] < 2.0, rows["bfloat16"]
    assert rows["bfloat16"]["age_change_median"] <= rows["bfloat16"]["age_change_max"]
    assert rows["bfloat16"]["minus_float32"][1] <= rows["bfloat16"]["minus_float32"][0] <= \
        rows["bfloat16"]["minus_float32"][2]
    inside = np.mean(np.abs(float32 - truth) <= 5.0)
    assert rows["float32"]["coverage"]["coverage"] == pytest.approx(inside)
    assert any("fgnet bfloat16" in line for line in seen)


def test_precision_rows_pair_each_precision_with_the_first():
    pop = {"truth": np.array([10.0, 22.0]), "low": np.array([10.0, 22.0]), "high": np.array([10.0, 22.0]),
           "subject": np.array(["a", "b"])}
    answers = {"float32": {"age": np.array([10.0, 20.0])}, "bfloat16": {"age": np.array([11.0, 20.0])}}
    rows = face_path.precision_rows(answers, pop)
    assert rows["float32"]["error"] == pytest.approx(1.0) and rows["bfloat16"]["error"] == pytest.approx(1.5)
    assert rows["bfloat16"]["minus_float32"][0] == pytest.approx(0.5)
    assert rows["bfloat16"]["age_change_max"] == 1.0 and rows["bfloat16"]["age_change_median"] == 0.5
    assert "coverage" not in rows["float32"]  # no interval answered


def test_the_precision_study_refuses_bfloat16_before_loading_anything(monkeypatch, no_bfloat16):
    monkeypatch.setattr(face_path.photos, "serving_module", lambda opened: pytest.fail("loaded a model"))
    with pytest.raises(precision.NoNativeBfloat16):
        face_path.score_precision("release", {"fgnet": ("build", None)})


@native
def test_the_photo_benchmark_answers_each_setting_in_its_own_precision(monkeypatch, float32_after):
    settings = photo_path.path_settings(("float32", "bfloat16"))
    assert [s.precision for s in settings] == ["float32", "float32", "float32", "bfloat16"]
    assert settings[3].label().endswith(", bfloat16") and settings[2].label() == benchmarking.NEW.label()
    opened = []

    def open_setting(model_path, setting, predictors):
        opened.append(setting)
        return photo_path.photos.Answerer(lambda crops: {}, None, faces.CropSpec(), input_size=8)

    calls = []

    def answer_photos(paths, answerer, decode="scaled"):
        calls.append(precision.current())
        return iter(())

    monkeypatch.setattr(benchmarking, "_open_setting", open_setting)
    monkeypatch.setattr(benchmarking.photos, "answer_photos", answer_photos)
    benchmarking.face_path_rates("model", {"photos": ["a.jpg"]}, None, settings, rounds=2, log=lambda text: None)
    expected = [s.precision for s in settings]
    assert calls == expected * 3  # the warm-up, then two rounds, each setting in its own precision
    assert precision.current() == "float32" and [dataclasses.astuple(s) for s in opened] == \
        [dataclasses.astuple(s) for s in settings]
