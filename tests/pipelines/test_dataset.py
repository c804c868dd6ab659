import collections

import numpy as np
import pytest
import tensorflow as tf

from alage_pipelines import augment, dataset, tfrecords
from alage_pipelines.readers import fgnet
from alage_pipelines.records import AgeRecord


@pytest.fixture(scope="module")
def fgnet_shards(shared_data, tmp_path_factory):
    """20 real FG-NET photos (greyscale ones included) in two shards."""
    records = fgnet.read_fgnet(shared_data / "fgnet").records[:20]
    folder = tmp_path_factory.mktemp("records")
    paths = [folder / f"train-{i:05d}-of-00002.tfrecord" for i in range(2)]
    for shard, path in enumerate(paths):
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records[shard::2]:
                writer.write(tfrecords.encode_example(record, open(record.path, "rb").read()))
    return records, [str(p) for p in paths]


def test_example_round_trip(fgnet_shards):
    records, paths = fgnet_shards
    parsed = tfrecords.parse_example(next(iter(tf.data.TFRecordDataset(paths[0]))))
    assert parsed["path"].numpy().decode() == records[0].path
    assert int(parsed["label"]) == records[0].label and parsed["subject"].numpy() == b"001"


def test_training_batches_are_augmented_faces(fgnet_shards):
    _, paths = fgnet_shards
    images, labels = next(iter(dataset.make_dataset(paths, dataset.DatasetConfig(4, 32, training=True))))
    assert images.shape == (4, 32, 32, 3) and labels["label"].shape == (4,)
    assert np.isfinite(images.numpy()).all()


def test_one_training_epoch_yields_every_record_once(fgnet_shards):
    records, paths = fgnet_shards
    data = dataset.make_dataset(paths, dataset.DatasetConfig(5, 32, training=True, drop_remainder=False))
    seen = collections.Counter(p.decode() for _, labels in data for p in labels["path"].numpy())
    assert seen == collections.Counter(r.path for r in records)


def test_evaluation_ten_crops_in_file_order(fgnet_shards):
    records, paths = fgnet_shards
    data = dataset.make_dataset(paths[:1], dataset.DatasetConfig(3, 32))
    images, labels = next(iter(data))
    assert images.shape == (3, 10, 32, 32, 3)
    assert [p.decode() for p in labels["path"].numpy()] == [r.path for r in records[0:6:2]]
    centre = dataset.make_dataset(paths[:1], dataset.DatasetConfig(3, 32, crops="center"))
    np.testing.assert_allclose(next(iter(centre))[0].numpy(), images.numpy()[:, 4], atol=1e-5)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="No TFRecord files match"):
        dataset.make_dataset(str(tmp_path / "*.tfrecord"), dataset.DatasetConfig(2, training=True))


def test_old_photo_evaluation_gives_each_face_its_own_fixed_print(fgnet_shards):
    """--eval_view=old_photo: the same face gets the same print whatever file order or batch; the
    faces as built are left alone."""
    records, paths = fgnet_shards

    def faces(files, batch_size, view):
        data = dataset.make_dataset(files, dataset.DatasetConfig(batch_size, 32, crops="center", eval_view=view))
        return {p.decode(): image for images, labels in data
                for p, image in zip(labels["path"].numpy(), images.numpy())}

    as_built = faces(paths, 4, "as_built")
    old = faces(paths, 4, "old_photo")
    again = faces(paths[::-1], 3, "old_photo")
    assert set(old) == set(again) == {r.path for r in records}
    for path in old:
        np.testing.assert_array_equal(old[path], again[path])
        assert np.abs(old[path] - as_built[path]).mean() > 0.02
    with pytest.raises(ValueError, match=r"^DatasetConfig.eval_view must be one of \('as_built', 'old_photo'\); "
                                         r"received 'sepia'.$"):
        dataset.DatasetConfig(2, eval_view="sepia")


def test_evaluation_preprocessing_passes_the_shift_on():
    """eval_preprocess(..., shift) gives augment.preprocess_for_eval's crops at that shift, with
    the record's labels (benchmarks/shift_crops.py compares shifts this way)."""

    rng = np.random.default_rng(0)
    photo = tf.io.encode_png(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).numpy()
    serialized = tfrecords.encode_example(AgeRecord("face.png", 30.0, 30), photo)
    crops, labels = dataset.eval_preprocess(64, "shift_flip", shift=3)(tf.constant(serialized))
    expected = augment.preprocess_for_eval(augment.decode(tf.constant(photo)), 64, "shift_flip", shift=3)
    np.testing.assert_array_equal(crops.numpy(), expected.numpy())
    default = augment.preprocess_for_eval(augment.decode(tf.constant(photo)), 64, "shift_flip")
    assert not np.array_equal(crops.numpy(), default.numpy())  # 3 px is not the default 2
    assert float(labels["age"]) == 30.0 and labels["path"].numpy() == b"face.png"
