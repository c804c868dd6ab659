"""A record found damaged while a command reads a build, told in one line naming its shard (the
train and evaluate commands; its own module because it needs the build's code, which `--help` and
`alage --help` do without)."""

import os

from alage_pipelines import build


def damaged_build(data_dir: str, error: Exception) -> str:
    """One line for a record found damaged while a command read it ("corrupted record at 247285"
    names no file): the shard that differs from the build's manifest, every shard hashed again (and
    the verification record dropped, so the next command says so before it starts), else the
    reader's own first line."""
    try:
        build.verify_shards(data_dir)
    except ValueError as found:
        try:
            os.remove(os.path.join(data_dir, build.VERIFIED))
        except OSError:
            pass
        return str(found)
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return f"--data_dir={data_dir}: a record could not be read ({first.strip()[:200]})"
