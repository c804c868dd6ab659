"""The TFRecord build: an Apache Beam pipeline from labelled photos to sharded face records.

The records are written in *parts*: the disjoint test sets of a protocol's folds (`fold0`,
`fold1`, ... for k-fold and leave-one-person-out, or `train` / `test` for a single split),
so every fold of a protocol trains on the other parts and tests on its own without copying
any image twice. The manifest says which parts each fold uses.

Every photo is read, checked, face-cropped with the shared `faces.CropSpec` and re-encoded as
RGB JPEG, so the input pipeline sees one format. A bad photo is skipped with its reason and
the build goes on; output is assembled aside and moved into place only when complete.

Beam runs locally on the DirectRunner (parallel worker processes); the same pipeline runs on
Dataflow, Flink or Spark with `--beam_args`. The finishing step (shard checksums, manifest,
the atomic move) reads the output folder through the local file system.

A build says how far it is in progress lines, one per stage (detect/cut, write) and one every
`PROGRESS_SECONDS` while a stage runs; Beam's own log (its runner's, its worker processes' and
the warnings of its optional Google Cloud clients) goes to a file kept only where the build
fails, unless `verbose`.
"""

import collections
import contextlib
import dataclasses
import datetime
import glob
import hashlib
import json
import math
import os
import shutil
import logging
import tempfile
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from alage_pipelines import faces, files, images, protocols, quiet
from alage_pipelines.records import AgeRecord

MANIFEST = "manifest.json"
RECORD_LOG = "records.jsonl"
SHARD_SUFFIX = ".tfrecord"
PROGRESS = ".progress"  # in the staging folder: each worker's count of photos done, while the build runs
PROGRESS_SECONDS = 10.0  # a running stage's progress line at most this often


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Settings of one build.

    Attributes:
      output_dir: folder to create; it holds the shards, `manifest.json` and `records.jsonl`.
      num_classes: labels must lie in [0, num_classes).
      crop: the face-crop specification (shared with prediction).
      policy: detection policy (detect or not, no-face handling, rotation search).
      records_per_shard: shard size target; each part gets ceil(n / this) shards.
      overwrite: replace an existing output folder (otherwise refuse).
      cache_dir: detection cache folder (None: no cache).
      base_dir: where relative photo paths start (`build_tfrecords` sets the launching
        process's folder): workers of a cluster (Beam's DaskRunner, Dataflow, ...) run
        elsewhere, while the records keep the paths as the reader gave them.
      workers: parallel worker processes of the DirectRunner.
      jpeg_quality: quality of the re-encoded crops.
      beam_args: extra Beam pipeline options, e.g. ["--runner=DataflowRunner", ...].
      detector: a picklable face detector with `detect(rgb) -> [(x, y, w, h, score[, roll])]`;
        None uses the crop's detector (`crop.detector`) when the policy detects.
    """

    output_dir: str
    num_classes: int
    crop: faces.CropSpec = faces.CropSpec()
    policy: faces.FacePolicy = faces.FacePolicy()
    records_per_shard: int = 1000
    overwrite: bool = False
    cache_dir: Optional[str] = None
    workers: int = 1
    jpeg_quality: int = 95
    beam_args: Tuple[str, ...] = ()
    detector: object = None
    base_dir: Optional[str] = None


def parts_of(split: protocols.Split) -> Tuple[Dict[str, List[str]], Dict[str, Dict[str, List[str]]]]:
    """The disjoint parts a split's records are written in, and each fold's parts.

    Returns:
      (part name -> image paths, fold name -> {"train": [part names], "test": [part names]}).
    """
    tests = [set(fold.test) for fold in split.folds]
    disjoint = sum(len(t) for t in tests) == len(set().union(*tests))
    everything = set(split.folds[0].train) | tests[0]
    covering = all(set(f.train) | set(f.test) == everything for f in split.folds)
    if len(split.folds) > 1 and disjoint and covering and set().union(*tests) == everything:
        parts = {fold.name: list(fold.test) for fold in split.folds}
        folds = {
            fold.name: {"train": [p for p in parts if p != fold.name], "test": [fold.name]}
            for fold in split.folds
        }
        return parts, folds
    if len(split.folds) == 1:
        fold = split.folds[0]
        return {"train": list(fold.train), "test": list(fold.test)}, {fold.name: {"train": ["train"], "test": ["test"]}}
    raise ValueError(
        f"Split {split.protocol!r}: the folds' test sets must be disjoint and cover every record "
        "(k-fold, leave-one-out), or there must be a single fold."
    )


# --- one photo -> one record -------------------------------------------------------------


class SkipPhoto(ValueError):
    """A photo that is skipped, with the reason reported in the manifest."""

    def __init__(self, reason: str, detector_calls: int = 0):
        super().__init__(reason)
        self.detector_calls = detector_calls


def check_record(record: AgeRecord, num_classes: int) -> None:
    if not 0 <= record.label < num_classes:
        raise SkipPhoto(f"label {record.label} outside 0-{num_classes - 1}")
    if not math.isfinite(record.age) or record.age < 0:
        raise SkipPhoto(f"age {record.age} is not a valid age")
    if not math.isfinite(record.age_std) or record.age_std < 0:
        raise SkipPhoto(f"age std {record.age_std} is not valid")


def face_record(record: AgeRecord, config: BuildConfig, detector=None, cache=None) -> Tuple[bytes, dict]:
    """A serialized Example for one record, and its log entry; raises SkipPhoto."""
    from alage_pipelines import tfrecords  # TensorFlow loads in the worker, not at import

    check_record(record, config.num_classes)
    try:
        data, pixels = images.read_photo(os.path.join(config.base_dir or "", record.path))
    except images.ImageError as error:
        raise SkipPhoto(error.reason) from None
    try:
        face, calls = faces.locate_face(pixels, data, config.policy, config.crop, detector, cache)
    except faces.NoFaceError as error:
        raise SkipPhoto(str(error), error.calls) from None
    crop = faces.crop_face(pixels, face, config.crop)
    encoded = faces.encode_jpeg(crop, config.jpeg_quality)
    log = {"face": face.method, "confidence": round(face.confidence, 4), "angle": face.angle, "detector_calls": calls}
    return tfrecords.encode_example(record, encoded), log


def _record_to_json(record: AgeRecord) -> dict:
    return dataclasses.asdict(record) | {"attributes": dict(record.attributes)}


# --- the Beam pipeline ----------------------------------------------------------------------


def _make_fn(config: BuildConfig, progress_dir: Optional[str] = None):
    import apache_beam as beam

    class FaceRecordFn(beam.DoFn):
        """(part, record) -> (part, path, serialized Example or None, its JSON log line), one per photo.

        One output, not a tagged second one: Beam's DaskRunner (2.77) mixes tagged outputs into
        the main one (the log file received the JPEG records)."""

        def __init__(self, config, progress_dir):
            self.config, self.progress_dir = config, progress_dir
            self.detector = None
            self.cache = None
            self.done, self.skipped, self.reported = 0, 0, 0.0

        def setup(self):
            quiet.import_tensorflow_quietly()  # a worker process: its own TensorFlow start-up
            if self.config.policy.detect:
                self.detector = self.config.detector or faces.make_detector(self.config.crop.detector)
            if self.config.cache_dir:
                self.cache = faces.DetectionCache(self.config.cache_dir)

        def process(self, element):
            part, record_json = element
            record = AgeRecord(**record_json)
            entry = {"part": part, "path": record.path, "age": record.age, "label": record.label,
                     "subject": record.subject, "attributes": dict(record.attributes)}
            try:
                serialized, log = face_record(record, self.config, self.detector, self.cache)
            except SkipPhoto as error:
                serialized = None
                entry |= {"status": "skipped", "reason": str(error), "detector_calls": error.detector_calls}
            except Exception as error:  # one bad photo never ends the build
                serialized = None
                entry |= {"status": "skipped", "reason": f"unexpected error: {type(error).__name__}: {error}"}
            else:
                entry |= {"status": "written"} | log
            self.done, self.skipped = self.done + 1, self.skipped + (serialized is None)
            if time.monotonic() - self.reported >= 1.0:
                self.report()
            yield part, record.path, serialized, json.dumps(entry, sort_keys=True)

        def finish_bundle(self):
            self.report()

        def report(self):
            """This worker's count of photos, where the build's watcher reads it (a runner whose
            workers cannot reach the staging folder just has no progress)."""
            self.reported = time.monotonic()
            if self.progress_dir and self.done:
                try:
                    files.write_atomically(os.path.join(self.progress_dir, f"{os.getpid()}-{id(self)}.json"),
                                           json.dumps({"done": self.done, "skipped": self.skipped}))
                except OSError:
                    pass

    return FaceRecordFn(config, progress_dir)


def _pipeline_options(config: BuildConfig):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(config.beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
        args.append(f"--direct_num_workers={max(1, config.workers)}")
        args.append(f"--direct_running_mode={'multi_processing' if config.workers > 1 else 'in_memory'}")
    return PipelineOptions(args)


def shard_of(path: str, shards: int) -> int:
    """A photo's shard within its part: fixed by its path, so every runner and every rerun
    writes the same records into the same files."""
    return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:8], "big") % shards


def shard_name(part: str, shard: int, shards: int) -> str:
    return f"{part}-{shard:05d}-of-{shards:05d}{SHARD_SUFFIX}"


def write_shard(directory: str, name: str, records: Sequence[bytes]) -> None:
    """One TFRecord file, written beside its final name and renamed into place."""
    import tensorflow as tf

    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    with tf.io.TFRecordWriter(temporary) as writer:
        for record in records:
            writer.write(record)
    os.replace(temporary, os.path.join(directory, name))


class _Watch:
    """Progress lines while the pipeline runs, from the main process: photos done (each worker's
    count in `staging/.progress`), then shard files written; a line at most every
    `PROGRESS_SECONDS` and only when the counts moved, and one as the last photo is done."""

    def __init__(self, staging: str, stage: str, photos: int, shards: int, say: Callable[[str], None]):
        self.staging, self.stage, self.photos, self.shards, self.say = staging, stage, photos, shards, say
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="build-progress", daemon=True)
        self.started = time.monotonic()
        self.photos_said = False  # the stage's last line, all photos done

    def counts(self) -> Tuple[int, int, int]:
        """(photos done, skipped, shard files written)."""
        done = skipped = 0
        for path in glob.glob(os.path.join(self.staging, PROGRESS, "*.json")):
            try:
                with open(path, encoding="utf-8") as handle:
                    count = json.load(handle)
                done, skipped = done + int(count["done"]), skipped + int(count["skipped"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return min(done, self.photos), skipped, len(glob.glob(os.path.join(self.staging, f"*{SHARD_SUFFIX}")))

    def photos_line(self, done: int, skipped: int) -> str:
        return (f"{self.stage}: {done}/{self.photos} photos ({100 * done // max(1, self.photos)} %), {skipped} skipped, "
                f"{time.monotonic() - self.started:.0f} s")

    def _run(self) -> None:
        said, shown = self.started, (0, 0, 0)
        while not self.stop.wait(1.0):
            done, skipped, written = now = self.counts()
            if not self.photos_said and (done == self.photos or written):  # shards come after every photo
                self.say(self.photos_line(self.photos, skipped))
                self.photos_said, said, shown = True, time.monotonic(), now
            elif now != shown and time.monotonic() - said >= PROGRESS_SECONDS:
                self.say(f"write: {written}/{self.shards} shards, {time.monotonic() - self.started:.0f} s"
                         if written else self.photos_line(done, skipped))
                said, shown = time.monotonic(), now

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, failed, *exc):
        self.stop.set()
        self.thread.join()
        if failed is None and not self.photos_said:  # finished before the watcher saw it (or a remote runner's)
            self.say(self.photos_line(self.photos, self.counts()[1]))


@contextlib.contextmanager
def beam_log(verbose: bool, say: Callable[[str], None]):
    """Beam's own log as it is (`verbose`), else into a file: its runner's lines, its worker
    processes' (they inherit file descriptor 2) and its optional clients' warnings ("apitools not
    found"). The file is removed after a build that succeeds and named after one that fails."""
    if verbose:
        yield
        return
    handle, path = tempfile.mkstemp(prefix="alage-build-", suffix=".beam.log", dir=outside_temporary_folder())
    os.close(handle)
    beam_logger = logging.getLogger("apache_beam")
    level = beam_logger.level
    beam_logger.setLevel(logging.ERROR)  # loggers that write elsewhere than file descriptor 2 (a test's capture)
    try:
        with quiet.stderr_to(path):
            yield
    except BaseException:
        say(f"Beam's log of this build: {path}")
        raise
    else:
        os.remove(path)
    finally:
        beam_logger.setLevel(level)


_private_temporary = {"lock": threading.Lock(), "users": 0, "folder": None, "previous": None, "outside": None}


def outside_temporary_folder() -> str:
    """Python's temporary folder as it is outside `private_temporary_folder` (a build's log kept
    there survives another build's private folder, which overlapping builds share)."""
    state = _private_temporary
    with state["lock"]:
        return state["outside"] if state["users"] else tempfile.gettempdir()


@contextlib.contextmanager
def private_temporary_folder():
    """Python's temporary folder (`tempfile.tempdir`) pointed, for the block, at a folder of its
    own that is removed after it. Beam makes folders there that it never removes: a `tmp*` from
    each `environments.python_sdk_dependencies` (two a pipeline), the `beam-temp*` of a job server
    that is never stopped (the DirectRunner's try of Prism) and `beam-requirements-cache`; about
    250 in /tmp after the test suite. Blocks that overlap (builds in threads) share one folder,
    removed and restored when the last one ends. Beam's log (`beam_log`) is made outside it."""
    state = _private_temporary
    with state["lock"]:
        if not state["users"]:
            state["previous"] = tempfile.tempdir
            state["outside"] = tempfile.gettempdir()
            state["folder"] = tempfile.mkdtemp(prefix="alage-beam-")
            tempfile.tempdir = state["folder"]
        state["users"] += 1
    try:
        yield state["folder"]
    finally:
        with state["lock"]:
            state["users"] -= 1
            if not state["users"]:
                tempfile.tempdir = state["previous"]
                shutil.rmtree(state["folder"], ignore_errors=True)
                state["folder"] = state["previous"] = state["outside"] = None


def stage_name(config: BuildConfig) -> str:
    return "detect/cut" if config.policy.detect else "cut"


def _run_pipeline(parts: Mapping[str, Sequence[AgeRecord]], config: BuildConfig, staging: str,
                  say: Callable[[str], None] = lambda line: None) -> None:
    """Photos -> face records -> grouped by (part, shard) -> shard files written by the workers;
    the log of every photo is the pipeline's one sink.

    One linear chain with one sink, because Beam's DaskRunner (2.77) runs only one branch of a
    pipeline that forks into several sinks (the per-part WriteToTFRecord outputs were never
    written), and records sorted by path in each shard, so the output is the same on any runner."""
    import apache_beam as beam

    shards = {part: max(1, math.ceil(len(records) / config.records_per_shard)) for part, records in parts.items()}
    elements = [(part, _record_to_json(r)) for part, records in parts.items() for r in records]

    def write(item):
        (part, shard), photos = item
        photos = sorted(photos, key=lambda photo: photo[0])
        write_shard(staging, shard_name(part, shard, shards[part]), [p[1] for p in photos if p[1] is not None])
        for _, _, log in photos:
            yield log

    with private_temporary_folder(), _Watch(staging, stage_name(config), len(elements), sum(shards.values()), say), \
            beam.Pipeline(options=_pipeline_options(config)) as pipeline:
        (
            pipeline
            | "Photos" >> beam.Create(elements, reshuffle=True)
            | "FaceRecords" >> beam.ParDo(_make_fn(config, os.path.join(staging, PROGRESS)))
            | "ByShard" >> beam.Map(lambda item: ((item[0], shard_of(item[1], shards[item[0]])), item[1:]))
            .with_output_types(beam.typehints.KV[beam.typehints.Any, beam.typehints.Any])
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards" >> beam.FlatMap(write)
            | "WriteLog" >> beam.io.WriteToText(os.path.join(staging, RECORD_LOG), num_shards=1, shard_name_template="")
        )
    for part, count in shards.items():  # a shard no photo fell into is written empty, as the manifest lists it
        for shard in range(count):
            if not os.path.exists(os.path.join(staging, shard_name(part, shard, count))):
                write_shard(staging, shard_name(part, shard, count), [])
    log = os.path.join(staging, RECORD_LOG)  # in path order, whatever order the runner wrote it in
    with open(log, encoding="utf-8") as handle:
        lines = sorted((line for line in handle if line.strip()), key=lambda line: json.loads(line)["path"])
    files.write_atomically(log, "".join(lines))


# --- finishing: checksums, manifest, atomic move ------------------------------------------------


def _checksum(path: str) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def _shard_info(path: str) -> dict:
    import tensorflow as tf

    count = int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
    return {"file": os.path.basename(path), "records": count} | _checksum(path)


def verify_shards(output_dir: str) -> None:
    """Raises ValueError naming any shard whose size or checksum differs from the manifest."""
    manifest = read_build_manifest(output_dir)
    for part in manifest["parts"].values():
        for shard in part["shards"]:
            path = os.path.join(output_dir, shard["file"])
            if not os.path.isfile(path):
                raise ValueError(f"{os.path.join(output_dir, shard['file'])}: shard missing from the build.")
            found = _checksum(path)
            if found != {"bytes": shard["bytes"], "sha256": shard["sha256"]}:
                raise ValueError(
                    f"{path}: size or checksum differs from the build's manifest (damaged or changed since the "
                    "build); rebuild it with scripts/build_tfrecords.py --overwrite."
                )


VERIFIED = ".verified.json"


def _shard_stats(output_dir: str, manifest: dict) -> dict:
    stats = {}
    for part in manifest["parts"].values():
        for shard in part["shards"]:
            path = os.path.join(output_dir, shard["file"])
            info = os.stat(path) if os.path.isfile(path) else None
            stats[shard["file"]] = [info.st_size, info.st_mtime_ns] if info else None
    return stats


def ensure_verified(output_dir: str) -> bool:
    """`verify_shards` once per build state: the result is cached in `.verified.json` beside the
    manifest (keyed by the manifest's hash and each shard's size and modification time), so
    training and evaluation check every shard before reading it without re-hashing an unchanged
    build each run. Returns True when it hashed. Raises ValueError naming a bad shard."""
    with open(os.path.join(output_dir, MANIFEST), "rb") as handle:
        manifest_hash = hashlib.sha256(handle.read()).hexdigest()
    manifest = read_build_manifest(output_dir)
    state = {"manifest_sha256": manifest_hash, "shards": _shard_stats(output_dir, manifest)}
    cache = os.path.join(output_dir, VERIFIED)
    try:
        with open(cache, encoding="utf-8") as handle:
            if json.load(handle) == state:
                return False
    except (OSError, ValueError):
        pass
    verify_shards(output_dir)
    try:
        files.write_atomically(cache, json.dumps(state, sort_keys=True))
    except OSError:  # a read-only build is verified every time
        pass
    return True


def _summarise(staging: str, parts: Mapping[str, Sequence[AgeRecord]]) -> dict:
    with open(os.path.join(staging, RECORD_LOG), encoding="utf-8") as handle:
        entries = [json.loads(line) for line in handle if line.strip()]
    expected = sum(len(r) for r in parts.values())
    if len(entries) != expected:
        raise RuntimeError(f"Build log has {len(entries)} entries for {expected} photos; the build is incomplete.")
    summary = {}
    for part in parts:
        shards = [_shard_info(p) for p in sorted(glob.glob(os.path.join(staging, f"{part}-*{SHARD_SUFFIX}")))]
        mine = [e for e in entries if e["part"] == part]
        written = sum(e["status"] == "written" for e in mine)
        if sum(s["records"] for s in shards) != written:
            raise RuntimeError(f"Part {part}: shards hold {sum(s['records'] for s in shards)} records, log says {written}.")
        summary[part] = {
            "photos": len(mine),
            "records": written,
            "skipped": len(mine) - written,
            "faces": dict(collections.Counter(e["face"] for e in mine if e["status"] == "written")),
            "shards": shards,
        }
    skipped = sorted(
        ({"path": e["path"], "part": e["part"], "reason": e["reason"]} for e in entries if e["status"] == "skipped"),
        key=lambda e: e["path"],
    )
    calls = sum(e.get("detector_calls", 0) for e in entries)
    return {
        "parts": summary,
        "records": sum(p["records"] for p in summary.values()),
        "skipped": skipped,
        "skipped_counts": dict(collections.Counter(e["reason"] for e in skipped)),
        "detector_calls": calls,
    }


def _write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)


def check_not_an_input(output: str, records: Sequence[AgeRecord] = (), given: Sequence[Tuple[str, str]] = ()) -> None:
    """Refuses an output folder that would replace or hold what the build reads, before anything
    is written or deleted: `given` (flag, folder or file) may be neither the output, nor inside
    it, nor hold it; no photo of `records` may lie inside it. Raises FileExistsError naming both."""
    for flag, path in given:
        if path and files.overlaps(output, path):
            raise FileExistsError(f"--output_dir={output} is one of the inputs ({flag}={path} is it, holds it or lies "
                                  "inside it): the build would replace what it reads; name an output folder of its own.")
    root = os.path.realpath(output)
    folders: Dict[str, bool] = {}
    for record in records:
        folder = os.path.dirname(os.path.abspath(record.path))
        if folder not in folders:
            folders[folder] = os.path.commonpath([root, os.path.realpath(folder)]) == root
        if folders[folder]:
            raise FileExistsError(f"--output_dir={output} is one of the inputs: it holds the photo {record.path}; the "
                                  "build would replace what it reads; name an output folder of its own.")


def build_tfrecords(
    split: protocols.Split,
    records: Sequence[AgeRecord],
    config: BuildConfig,
    dataset: str,
    reader_dropped: Sequence[Tuple[str, str]] = (),
    progress: Optional[Callable[[str], None]] = None,
    verbose: bool = False,
) -> dict:
    """Builds the TFRecords of `records` in the parts of `split` and returns the manifest. The
    output is held for the build's life (`files.place_lock`): a second build of it stops at once.
    `progress` receives the build's progress lines (stage: counts); Beam's own log is shown only
    where `verbose` (`beam_log`).

    Raises:
      FileExistsError: the output exists and `config.overwrite` is False.
      files.FolderBusy: another process is building it.
    """
    with files.place_lock(os.path.abspath(config.output_dir), "building TFRecords"):
        return _build(split, records, config, dataset, reader_dropped, progress or (lambda line: None), verbose)


def _build(split, records, config: BuildConfig, dataset: str, reader_dropped, say: Callable[[str], None],
           verbose: bool) -> dict:
    output = os.path.abspath(config.output_dir)
    config = dataclasses.replace(  # workers elsewhere (a cluster) resolve paths as this process does
        config, base_dir=config.base_dir or os.getcwd(),
        cache_dir=os.path.abspath(config.cache_dir) if config.cache_dir else None)
    check_not_an_input(output, records)
    if os.path.exists(output) and not config.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it.")
    if not records:
        reasons = collections.Counter(r for _, r in reader_dropped).most_common(3)
        raise ValueError(
            f"{dataset}: the reader found no usable photo ({len(reader_dropped)} dropped"
            f"{': ' + '; '.join(f'{n} {r}' for r, n in reasons) if reasons else ''}); is --data_dir a {dataset} folder?"
        )
    by_path = {r.path: r for r in records}
    part_paths, folds = parts_of(split)
    missing = [p for paths in part_paths.values() for p in paths if p not in by_path]
    if missing:
        raise ValueError(f"The split names {len(missing)} image(s) without a record, e.g. {missing[0]}.")
    parts = {name: [by_path[p] for p in paths] for name, paths in part_paths.items()}

    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    remove_stale_staging(output)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.building-{os.getpid()}-", dir=parent)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the final folder must be readable by a server
    try:
        started = datetime.datetime.now(datetime.timezone.utc)
        stage = stage_name(config)
        say(f"{stage}: {len(records)} photos, {config.workers} worker process{'es' * (config.workers > 1)}")
        with beam_log(verbose, say):
            _run_pipeline(parts, config, staging, say)
        piped = time.monotonic()
        manifest = {
            "dataset": dataset,
            "created": started.isoformat(timespec="seconds"),
            "seconds": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1),
            "num_classes": config.num_classes,
            "crop": config.crop.to_json(),
            "face_policy": dataclasses.asdict(config.policy),
            "folds": folds,
            "split": split.to_json(),
            "reader_dropped": [{"source": s, "reason": r} for s, r in reader_dropped],
            "reader_dropped_counts": dict(collections.Counter(r for _, r in reader_dropped)),
        } | _summarise(staging, parts)
        if not manifest["records"]:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(manifest["skipped_counts"].items(), key=lambda x: -x[1])[:3])
            raise ValueError(f"{dataset}: no photo gave a record ({reasons}); nothing was written to {output}.")
        _write_json(os.path.join(staging, MANIFEST), manifest)
        for leftover in glob.glob(os.path.join(staging, "beam-temp-*")) + [os.path.join(staging, PROGRESS)]:
            shutil.rmtree(leftover, ignore_errors=True)
        _move_into_place(staging, output)
        shards = sum(len(part["shards"]) for part in manifest["parts"].values())
        say(f"write: {manifest['records']} records in {shards} shard{'s' * (shards != 1)}, checksummed and moved "
            f"into place, {time.monotonic() - piped:.1f} s")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_staging(output: str) -> List[str]:
    """Removes the staging folders (`.<out>.building-<pid>-*`, `.<out>.previous-*`) that a killed
    build left beside `output`: those whose process is gone. Returns the removed paths."""
    removed = []
    base = os.path.basename(output)
    for path in glob.glob(os.path.join(os.path.dirname(output), f".{base}.building-*")):
        pid = os.path.basename(path)[len(f".{base}.building-"):].split("-")[0]
        if not pid.isdigit() or not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if os.path.exists(output):  # a .previous- folder is only needed during the swap into place
        for path in glob.glob(os.path.join(os.path.dirname(output), f".{base}.previous-*")):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _move_into_place(staging: str, output: str) -> None:
    """Replaces `output` by `staging` with renames (`files.replace_folder`): readers see the old or
    the new build; the old one is set aside in a `.<out>.previous-*` folder, removed after."""
    previous = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.previous-", dir=os.path.dirname(output))
    try:
        files.replace_folder(staging, output, os.path.join(previous, "build"))
    except BaseException:
        with contextlib.suppress(OSError):
            os.rmdir(previous)  # empty: the old build was put back (else it waits there, whole)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def describe(manifest: dict, output_dir: str) -> str:
    """A short human report of a build: records per part, faces, and what was skipped."""
    lines = [f"{manifest['dataset']}: {manifest['records']} records in {output_dir} ({manifest['seconds']} s)"]
    for name, part in manifest["parts"].items():
        found = ", ".join(f"{n} {method}" for method, n in sorted(part["faces"].items()))
        lines.append(f"  {name}: {part['records']} records in {len(part['shards'])} shard(s), "
                     f"{part['skipped']} skipped; faces: {found or 'none'}")
    for reason, count in sorted(manifest["skipped_counts"].items()):
        lines.append(f"  skipped {count}: {reason}")
    for reason, count in sorted(manifest["reader_dropped_counts"].items()):
        lines.append(f"  dropped by the reader {count}: {reason}")
    lines.append(f"  detector calls: {manifest['detector_calls']}; details in {MANIFEST} and {RECORD_LOG}")
    return "\n".join(lines)


# --- reading a build ------------------------------------------------------------------------------


def read_build_manifest(output_dir: str) -> dict:
    return Build.open(output_dir).manifest


def read_record_log(output_dir: str) -> List[dict]:
    """The build's per-photo log (records.jsonl): path, part, age, label, subject,
    attributes (e.g. UTKFace's gender and race), status and face details."""
    path = os.path.join(output_dir, RECORD_LOG)
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: {output_dir} is not a TFRecord build.") from None


def check_manifest(path: str, manifest) -> None:
    """Refuses (ValueError naming `path`) a manifest whose entries are not of the shape a build's
    readers take: its dataset, class count, parts with their shards, and folds of those parts
    (a damaged one was a KeyError or TypeError traceback in evaluate.py and train.py)."""
    def refuse(what: str):
        raise ValueError(f"{path}: {what}; not a build's manifest (rebuild with scripts/build_tfrecords.py).")

    if not isinstance(manifest, dict):
        refuse(f"holds a JSON {type(manifest).__name__}")
    missing = [key for key in ("dataset", "num_classes", "parts", "folds") if key not in manifest]
    if missing:
        refuse(f"no {', '.join(missing)}")
    if not isinstance(manifest["dataset"], str) or not isinstance(manifest["num_classes"], int) \
            or isinstance(manifest["num_classes"], bool) or manifest["num_classes"] < 1:
        refuse("'dataset' must be a name and 'num_classes' a positive integer")
    parts = manifest["parts"]
    if not isinstance(parts, dict) or not parts:
        refuse("'parts' must name the build's parts")
    for name, part in parts.items():
        shards = part.get("shards") if isinstance(part, dict) else None
        if not (isinstance(shards, list) and isinstance(part.get("records"), int) and all(
                isinstance(shard, dict) and isinstance(shard.get("file"), str) and isinstance(shard.get("records"), int)
                for shard in shards)):
            refuse(f"part {name!r} must list its shards (file and records) and its records")
    folds = manifest["folds"]
    if not isinstance(folds, dict) or not folds:
        refuse("'folds' must name the build's folds")
    for name, sides in folds.items():
        if not (isinstance(sides, dict) and all(isinstance(sides.get(side), list) and all(p in parts for p in sides[side])
                                                for side in ("train", "test"))):
            refuse(f"fold {name!r} must hold train and test lists of its parts")


@dataclasses.dataclass(frozen=True)
class Build:
    """A TFRecord build opened once: its manifest read and hashed in one visit, answering folds,
    parts, shards, counts and its identity without reading the folder again.

    `Build.open(path, verify=True)` also checks every shard against the manifest first
    (`ensure_verified`), as training and evaluation do before reading one."""

    directory: str
    manifest: dict
    manifest_sha256: str

    @classmethod
    def open(cls, directory: str, verify: bool = False) -> "Build":
        path = os.path.join(directory, MANIFEST)
        try:
            with open(path, "rb") as handle:
                payload = handle.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} not found: {directory} is not a TFRecord build.") from None
        try:
            manifest = json.loads(payload)
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        except RecursionError:
            raise ValueError(f"{path} is nested too deep to be a build's manifest.") from None
        check_manifest(path, manifest)
        opened = cls(directory, manifest, hashlib.sha256(payload).hexdigest())
        if verify:
            ensure_verified(directory)
        return opened

    @property
    def identity(self) -> dict:
        """The build's folder and the SHA-256 of its manifest (which lists every shard's checksum)."""
        return {"data_dir": os.path.abspath(self.directory), "manifest_sha256": self.manifest_sha256}

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def num_classes(self) -> int:
        return self.manifest["num_classes"]

    @property
    def folds(self) -> List[str]:
        return list(self.manifest["folds"])

    @property
    def crop(self) -> Optional[faces.CropSpec]:
        """The crop its detected faces were cut with (`faces.crop_of_build`)."""
        return faces.crop_of_build(self.manifest)

    def fold_names(self, requested) -> List[str]:
        """The requested folds (("all",): every fold), refusing one the build does not have."""
        if tuple(requested) == ("all",):
            return self.folds
        unknown = [f for f in requested if f not in self.manifest["folds"]]
        if unknown:
            raise ValueError(f"--fold {unknown} not in {self.directory}; it has {self.folds} (or 'all').")
        return list(requested)

    def sides(self, fold: str) -> Dict[str, List[str]]:
        """{"train": parts, "test": parts} of one fold."""
        if fold not in self.manifest["folds"]:
            raise KeyError(f"Fold {fold!r} is not in {self.directory}; it has {sorted(self.manifest['folds'])}.")
        return self.manifest["folds"][fold]

    def part_shards(self, parts: Sequence[str]) -> List[Tuple[str, int]]:
        """(file, records) of every shard of the given parts."""
        return [(os.path.join(self.directory, shard["file"]), shard["records"])
                for part in parts for shard in self.manifest["parts"][part]["shards"]]

    def part_files(self, parts: Sequence[str]) -> List[str]:
        return [path for path, _ in self.part_shards(parts)]

    def records(self, parts: Sequence[str]) -> int:
        return sum(self.manifest["parts"][part]["records"] for part in parts)

    def fold_files(self, fold: str, side: str) -> List[str]:
        """The shard files of one side ("train" or "test") of one fold."""
        return self.part_files(self.sides(fold)[side])

    def first_fold_files(self, side: str) -> List[str]:
        """One side of the first fold (a release's build has one fold: its split)."""
        return self.fold_files(self.folds[0], side)

    def validation_part(self, fold: str) -> str:
        return validation_part(self.manifest, fold)

    def record_log(self) -> List[dict]:
        return read_record_log(self.directory)

    def fold_ages(self, fold: str, side: str) -> List[float]:
        """Ages of the written records of one side of one fold (e.g. for the mean-age baseline)."""
        parts = set(self.sides(fold)[side])
        return [e["age"] for e in self.record_log() if e["status"] == "written" and e["part"] in parts]


def validation_part(manifest: dict, fold: str) -> str:
    """The training part a fold holds out for validation: the part after the fold's test part in
    the build's order (cyclically) that is on its training side. Parts are subject-exclusive in
    k-fold and leave-one-person-out builds, so validation shares no person with training or test."""
    sides = manifest["folds"][fold]
    order = list(manifest["parts"])
    if len(sides["train"]) < 2:
        raise ValueError(f"Fold {fold!r} trains on {len(sides['train'])} part; holding one out for validation "
                         "needs a build of several parts (k-fold or leave-one-person-out).")
    start = order.index(sides["test"][0]) if sides["test"][0] in order else 0
    for step in range(1, len(order) + 1):
        part = order[(start + step) % len(order)]
        if part in sides["train"]:
            return part
    raise ValueError(f"Fold {fold!r} has no training part to hold out.")
