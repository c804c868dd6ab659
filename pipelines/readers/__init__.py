"""Readers of each data set's native layout; each returns a `records.ReadResult`."""
