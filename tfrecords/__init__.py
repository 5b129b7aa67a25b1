"""TFRecords: the record schema, the dataset manifest, the tf.data reader and verify."""
