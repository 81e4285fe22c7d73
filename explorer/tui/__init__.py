"""The Textual explorer: timelines, allocator and event panels over a RecordingIndex (it only reads the model)."""
