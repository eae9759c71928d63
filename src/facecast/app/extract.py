"""`facecast extract`: the motion of a real talking video, with the visemes and voice level of its audio.

Why here: the face's motion comes from `face.extraction` and the voice's from
`speech.voice`; the components never import each other, so the app (and, offline,
the dataset) puts the two together.
"""

from __future__ import annotations

from pathlib import Path

from facecast.face.extraction import Extraction, extract, open_video
from facecast.media import AtomicOutput, iter_mono_blocks
from facecast.motion import MotionHeader, check_motion_output, write_motion
from facecast.speech.voice import voice_track


def extract_with_voice(path: str | Path, reference: int | str = "neutral",
                       max_frames: int | None = None) -> Extraction:
    """`face.extraction.extract`, plus the visemes and voice level of the video's audio track (none without one)."""
    result = extract(path, reference=reference, max_frames=max_frames)
    if open_video(path).has_audio:
        result.visemes, result.voice = voice_track(iter_mono_blocks(path), result.fps, len(result.found))
    return result


def extract_motion_file(video: Path, output: Path, reference: int | str = "neutral",
                        overwrite: bool = False) -> tuple[Path, Extraction]:
    """`facecast extract`: video -> a JSONL motion file; returns the path and what was measured."""
    check_motion_output(Path(output))
    with AtomicOutput(output, overwrite, inputs=(video,)) as sink:  # an unwritable output fails before the work
        result = extract_with_voice(video, reference=reference)
        write_motion(sink.temp, MotionHeader(fps=result.fps, generator="extract", source=Path(video).name),
                     result.frames())
        sink.commit()
    return sink.final, result
