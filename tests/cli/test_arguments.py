"""NAME=FOLDER flags (experiments' --run, --variant) are read in one place and refused in one line."""

import pytest
from absl import app

from keras_alage import cli


def test_named_folders_keep_their_order_and_refuse_what_is_not_a_named_folder(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    named = cli.named_folders([f"second={tmp_path / 'b'}", f"first={tmp_path / 'a'}"], "run")
    assert list(named.items()) == [("second", str(tmp_path / "b")), ("first", str(tmp_path / "a"))]
    for values, said in (([str(tmp_path / "a")], "--run must be NAME=FOLDER"),
                         (["x="], "--run must be NAME=FOLDER"),
                         ([f"x={tmp_path / 'missing'}"], "--run x: "),
                         ([], "Give at least one --run=NAME=FOLDER")):
        with pytest.raises(app.UsageError, match=said):
            cli.named_folders(values, "run")
