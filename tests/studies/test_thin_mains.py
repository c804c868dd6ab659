"""benchmarks/ and experiments/ mains are flags and a call into the library: each defines `main` and
nothing else, and imports nothing inside a function (what they measure or build lives in
keras_alage/studies/: `benchmarks/`, `releases/`, ...)."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# Mains not yet thin, each with why.
NOT_YET = {
    "experiments/attention_evidence.py": "its variant-folder helper goes with studies.attention_evidence's rework",
}
MAINS = sorted(str(p.relative_to(REPO)) for folder in ("benchmarks", "experiments") for p in (REPO / folder).glob("*.py")
               if p.name != "__init__.py")


def shape_of(path: pathlib.Path):
    """(the names of its top-level functions and classes, the names it imports inside a function)."""
    tree = ast.parse(path.read_text())
    defined = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    hidden = [alias.name for node in tree.body if isinstance(node, ast.FunctionDef) for inner in ast.walk(node)
              if isinstance(inner, (ast.Import, ast.ImportFrom)) for alias in inner.names]
    return defined, hidden


@pytest.mark.parametrize("main", MAINS)
def test_a_main_is_flags_and_a_library_call(main):
    if main in NOT_YET:
        pytest.skip(f"{main}: not yet ({NOT_YET[main]})")
    defined, hidden = shape_of(REPO / main)
    assert defined == ["main"], f"{main} defines {defined}: its logic belongs in keras_alage/studies/"
    assert not hidden, f"{main} imports {hidden} inside a function"


def test_the_check_finds_a_helper_and_a_hidden_import(tmp_path):
    thick = tmp_path / "thick.py"
    thick.write_text("import os\n\ndef helper():\n    import cv2\n\ndef main(argv):\n    helper()\n")
    assert shape_of(thick) == (["helper", "main"], ["cv2"])
