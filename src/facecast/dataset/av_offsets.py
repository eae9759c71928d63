"""Recordings whose sound is out of step with their picture, and by how much.

Why: some source videos were muxed from separate sound and picture files. The
mouth-gap nets learn which sound goes with which mouth frame, so a clip whose
sound is 2 frames late teaches them to open the mouth 2 frames early. Each
offset was measured by nets that never heard the clip: the lag at which their
asked-for gap best matches the real mouth (`benchmarks/av_offsets.py`). `lrc_ar`'s
1.2 s word clips are too short to measure one by one, so the corpus has one
offset (its clips' mean correlation peaks there); other clips have their own
where it is 2 frames or more (1 frame is within what the measurement can tell).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

OFFSETS_PATH = Path(__file__).resolve().parent / "av_offsets.json"


@functools.cache
def _offsets() -> tuple[dict[str, int], dict[str, int]]:
    data = json.loads(OFFSETS_PATH.read_text(encoding="utf-8"))
    return data["corpora"], data["clips"]


def av_offset(path: str) -> int:
    """Frames (25 fps) by which the sound of the dataset clip at `path` (relative to the data folder, as the
    cache names it) is late against its picture; 0 for a recording in step (and a user's own videos)."""
    corpora, clips = _offsets()
    if path in clips:
        return int(clips[path])
    return next((int(k) for prefix, k in corpora.items() if path.startswith(prefix)), 0)
