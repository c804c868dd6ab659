"""A folder held by one process: a second one is refused naming the holder, and a killed holder
leaves nothing stale; portable paths name no checkout; a folder swapped into place is whole old or
whole new."""

import os
import signal
import subprocess
import sys

import pytest

from alage_pipelines import files

HOLD = ("import sys, time\n"
        "from alage_pipelines import files\n"
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



def _folder(path, text):
    """A folder of two files, one in a subfolder; returns what it holds."""
    (path / "inside").mkdir(parents=True)
    (path / "model.txt").write_text(text)
    (path / "inside" / "weights.txt").write_text(text * 3)
    return _contents(path)


def _contents(path):
    return {os.path.relpath(os.path.join(root, name), path): open(os.path.join(root, name)).read()
            for root, _, names in os.walk(path) for name in names}


KILLED_BETWEEN_RENAMES = (
    "import os, signal, sys\n"
    "from alage_pipelines import files\n"
    "rename, calls = os.rename, []\n"
    "def dying(source, destination):\n"
    "    calls.append(source)\n"
    "    if len(calls) == 2:  # the old folder is set aside, the new one not yet in\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    rename(source, destination)\n"
    "os.rename = dying\n"
    "files.replace_folder(*sys.argv[1:])\n")


def test_a_folder_swapped_into_place_is_whole_old_or_whole_new_even_if_killed_between_the_renames(tmp_path):
    target, aside = tmp_path / "target", tmp_path / ".target.retired"
    _folder(target, "old")
    new = _folder(tmp_path / "staging", "new")
    files.replace_folder(str(tmp_path / "staging"), str(target), str(aside))
    assert _contents(target) == new and sorted(os.listdir(tmp_path)) == ["target"]  # nothing left beside it

    _folder(tmp_path / "staging", "newer")
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(tmp_path / "staging"), str(target),
                             str(aside)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not target.exists() and _contents(aside) == new  # the earlier folder waits whole, set aside
    again = _folder(tmp_path / "again", "again")
    files.replace_folder(str(tmp_path / "again"), str(target), str(aside))  # put back first, then replaced
    assert _contents(target) == again and not aside.exists()


def test_a_failed_rename_into_place_puts_the_old_folder_back_whole(tmp_path, monkeypatch):
    old = _folder(tmp_path / "target", "old")
    _folder(tmp_path / "staging", "new")
    rename = os.rename

    def failing(source, destination):
        if os.path.basename(source) == "staging":
            raise OSError(28, "No space left on device")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="No space"):
        files.replace_folder(str(tmp_path / "staging"), str(tmp_path / "target"), str(tmp_path / ".target.retired"))
    assert _contents(tmp_path / "target") == old and sorted(os.listdir(tmp_path)) == ["staging", "target"]


def test_a_folder_a_killed_swap_set_aside_is_put_back_first_and_a_link_is_never_replaced(tmp_path, monkeypatch):
    old = _folder(tmp_path / ".target.retired", "old")  # the target missing: killed between the renames
    (tmp_path / "staging").mkdir()
    rename = os.rename

    def only_put_back(source, destination):
        if not source.endswith(".retired"):
            raise OSError(5, "Input/output error")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", only_put_back)
    with pytest.raises(OSError, match="Input/output"):
        files.replace_folder(str(tmp_path / "staging"), str(tmp_path / "target"), str(tmp_path / ".target.retired"))
    assert _contents(tmp_path / "target") == old  # the swap failed, but the old folder is in place again
    monkeypatch.undo()
    os.symlink(tmp_path / "staging", tmp_path / "link")
    with pytest.raises(FileExistsError, match="link is a symbolic link; only a folder is replaced"):
        files.replace_folder(str(tmp_path / "staging"), str(tmp_path / "link"), str(tmp_path / ".link.retired"))
    assert os.path.islink(tmp_path / "link") and (tmp_path / "staging").is_dir()
