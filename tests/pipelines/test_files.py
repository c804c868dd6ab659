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


def test_an_atomic_write_is_0644_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)  # a private umask: only the explicit mode gives 0644
    try:
        files.write_atomically(tmp_path / "out.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o644


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    def on_a_full_disk(dir, prefix, suffix):  # the temporary file's bytes go to /dev/full (ENOSPC)
        return os.open("/dev/full", os.O_WRONLY), str(tmp_path / f"{prefix}x{suffix}")

    monkeypatch.setattr(files.tempfile, "mkstemp", on_a_full_disk)
    with pytest.raises(OSError, match="No space left on device") as raised:
        files.write_atomically(tmp_path / "results.json", "x" * 100000)
    assert raised.value.filename == str(tmp_path / "results.json")
    assert os.listdir(tmp_path) == []


def test_an_output_replaces_only_a_regular_file(tmp_path):
    (tmp_path / "file.csv").write_text("x")
    files.check_replaceable(tmp_path / "file.csv", "--output")
    files.check_replaceable(tmp_path / "new.csv", "--output")
    os.mkfifo(tmp_path / "pipe.csv")
    os.symlink(tmp_path / "file.csv", tmp_path / "link.csv")
    for path, kind in (("/dev/null", "a device"), (tmp_path / "pipe.csv", "a pipe"), (tmp_path, "a folder"),
                       (tmp_path / "link.csv", "a symbolic link")):
        with pytest.raises(FileExistsError, match=f"--output is {kind}; an output only replaces a regular file"):
            files.check_replaceable(path, "--output")


def test_a_link_or_a_pipe_where_we_write_is_refused_never_written_through(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"the user's photo")
    os.symlink(photo, tmp_path / "table.csv.partial")
    with pytest.raises(FileExistsError, match="table.csv.partial is a symbolic link"):
        files.open_regular(tmp_path / "table.csv.partial", os.O_RDWR | os.O_CREAT)
    os.symlink(photo, tmp_path / ".out.lock")  # a lock file aimed at a photo: never truncated
    with pytest.raises(FileExistsError, match="is a symbolic link"):
        with files.place_lock(str(tmp_path / "out"), "a test"):
            pass
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(FileExistsError, match="pipe is not a regular file"):  # refused at once, not waited on
        files.open_regular(tmp_path / "pipe", os.O_RDONLY)
    assert photo.read_bytes() == b"the user's photo"


def test_overlapping_folders_are_found_both_ways_and_through_links(tmp_path):
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    os.symlink(tmp_path / "photos", tmp_path / "alias")
    assert files.overlaps(str(tmp_path / "photos"), str(tmp_path / "alias"))
    assert files.overlaps(str(tmp_path / "photos" / "sub"), str(tmp_path / "photos"))  # inside
    assert files.overlaps(str(tmp_path), str(tmp_path / "photos"))  # holds it
    assert not files.overlaps(str(tmp_path / "photos-build"), str(tmp_path / "photos"))
