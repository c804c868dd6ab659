"""Data pipelines for keras-alage: readers, protocols, face preprocessing, TFRecords, tf.data."""
