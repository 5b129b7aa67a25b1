"""Ingest: stream a corpus into sharded sliding-window TFRecords (see DESIGN.md)."""
