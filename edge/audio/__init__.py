"""Audio: a RAM ring addressed by sample index, clips cut from it and written atomically."""

from edge.audio.clipper import CLIPS_DIR, ClipMissing, Clipper, ClipResult
from edge.audio.encode import CODEC_EXTENSIONS, PARTIAL_SUFFIX, Codec, cleanup_partials, write_clip
from edge.audio.ring import Cut, Ring, View

__all__ = [
    "CLIPS_DIR",
    "CODEC_EXTENSIONS",
    "PARTIAL_SUFFIX",
    "ClipMissing",
    "ClipResult",
    "Clipper",
    "Codec",
    "Cut",
    "Ring",
    "View",
    "cleanup_partials",
    "write_clip",
]
