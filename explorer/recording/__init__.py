"""Recordings (.pasidrec): msgpack chunks framed with checksums, a footer index, and honest recovery."""

from .header import FORMAT_NAME, FORMAT_VERSION, DeviceInfo, Header, this_host
from .reader import ChunkInfo, Damage, Recording, open_recording
from .writer import DEFAULT_CHUNK_EVENTS, RecordingWriter, write_events

__all__ = [
    "ChunkInfo", "Damage", "DeviceInfo", "DEFAULT_CHUNK_EVENTS", "FORMAT_NAME", "FORMAT_VERSION", "Header",
    "Recording", "RecordingWriter", "open_recording", "this_host", "write_events",
]
