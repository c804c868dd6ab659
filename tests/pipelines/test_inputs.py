import os
import threading

import pytest

from alage_pipelines import inputs


def _without_waiting(call):
    """`call()`'s outcome, failing the test (after unblocking it) if it waits on the pipe."""
    outcome = []

    def run():
        try:
            outcome.append(call())
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "it waited on the pipe"
    return outcome[0]


def test_a_pipe_socket_or_device_is_refused_without_being_waited_on(tmp_path):
    fifo = tmp_path / "weights.npz"
    os.mkfifo(fifo)  # opening it for reading waits for a writer
    for call in (lambda: inputs.read_bounded(str(fifo), 100), lambda: inputs.check_regular(str(fifo))):
        error = _without_waiting(call)
        assert isinstance(error, inputs.NotRegularFile) and f"{fifo} is a pipe, not a regular file" in str(error)
    error = _without_waiting(lambda: inputs.read_bounded("/dev/zero", 100, shown="model.json"))
    assert isinstance(error, inputs.NotRegularFile) and str(error).startswith("model.json is a device")
    with pytest.raises(inputs.NotRegularFile, match="is a folder"):
        inputs.read_bounded(str(tmp_path), 100)
    with pytest.raises(FileNotFoundError):
        inputs.read_bounded(str(tmp_path / "missing"), 100)


def test_a_file_is_read_only_within_its_bound(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"x" * 100)
    assert inputs.read_bounded(str(path), 100) == b"x" * 100
    with pytest.raises(inputs.TooLarge, match="is 100 bytes, more than a model description can be"):
        inputs.read_bounded(str(path), 99, "a model description")
    assert inputs.check_regular(str(path)).st_size == 100
    os.symlink(path, tmp_path / "link.json")  # a link to a regular file is read like it
    assert inputs.read_bounded(str(tmp_path / "link.json"), 100) == b"x" * 100


def test_a_file_that_grows_after_its_size_was_seen_is_read_only_up_to_the_bound(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 110)
    real_fstat = os.fstat  # as if it were 10 bytes when looked at, and grew by 100 since
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))
    with pytest.raises(inputs.TooLarge, match="grew past 50 bytes"):
        inputs.read_bounded(str(path), 50)
    assert inputs.read_bounded(str(path), 200) == b"x" * 110
