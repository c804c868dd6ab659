"""A folder held by one process: a second one is refused naming the holder, and a killed holder
leaves nothing stale; portable paths name no checkout."""

import os
import signal
import subprocess
import sys

import pytest

from pipelines import files

HOLD = ("import sys, time\n"
        "from pipelines import files\n"
        "with files.folder_lock(sys.argv[1], 'a test'):\n"
        "    print('holding', flush=True); time.sleep(120)\n")


def test_a_held_folder_refuses_a_second_process_until_its_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(files.FolderBusy, match=f"process {holder.pid} on .* \\(a test\\)"):
            with files.folder_lock(str(tmp_path), "training"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with files.folder_lock(str(tmp_path), "training"):  # released by the kill: nothing stale
        assert "training" in (tmp_path / files.LOCK_FILE).read_text()


def test_portable_paths_are_relative_inside_the_checkout_and_beside_it(tmp_path, monkeypatch):
    checkout = tmp_path / "main"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    assert files.portable_path(str(checkout / "data" / "b")) == os.path.join("data", "b")
    assert files.portable_path(str(tmp_path / "shared" / "x.jpg")) == os.path.join("..", "shared", "x.jpg")
    assert files.portable_path("/elsewhere/x") == "/elsewhere/x"
