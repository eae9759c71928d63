"""Word timings for GRID clips: the corpus' own alignments, or forced alignment of the known sentence.

Why: lip-sync measures (bilabial closure at b/p/m words, word-level checks) need
to know when each word is spoken. GRID file names encode their sentence
(`bbaf2n` = "bin blue at f two now"), so for speakers without alignment files
pocketsphinx can place the known words in the audio (forced alignment) with
its US-English acoustic model, which ships inside its wheel (nothing is
downloaded). pocketsphinx is an optional dependency (the `train` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecast.errors import FacecastError, InputError

#: GRID's six word slots, each coded by one character of the file name.
GRID_COMMANDS = {"b": "bin", "l": "lay", "p": "place", "s": "set"}
GRID_COLOURS = {"b": "blue", "g": "green", "r": "red", "w": "white"}
GRID_PREPOSITIONS = {"a": "at", "b": "by", "i": "in", "w": "with"}
GRID_DIGITS = {"z": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
               "6": "six", "7": "seven", "8": "eight", "9": "nine"}
GRID_ADVERBS = {"a": "again", "n": "now", "p": "please", "s": "soon"}
#: GRID's .align files count time in 1/25000 s.
GRID_ALIGN_UNITS_PER_S = 25000.0
#: pocketsphinx's frame rate (frames per second of its segmentation).
SPHINX_FRAMES_PER_S = 100


@dataclass(frozen=True)
class Word:
    """One spoken word: start and end in seconds from the start of the clip."""

    start: float
    end: float
    word: str


def grid_sentence(name: str) -> list[str]:
    """The six words a GRID file name encodes ('bbaf2n' or 'bbaf2n.mp4' -> bin blue at f two now)."""
    code = Path(name).stem.lower()
    if len(code) != 6 or code[3] not in "abcdefghijklmnopqrstuvxyz":
        raise InputError(f"'{name}' is not a GRID sentence code (six letters like 'bbaf2n')")
    try:
        return [GRID_COMMANDS[code[0]], GRID_COLOURS[code[1]], GRID_PREPOSITIONS[code[2]], code[3],
                GRID_DIGITS[code[4]], GRID_ADVERBS[code[5]]]
    except KeyError:
        raise InputError(f"'{name}' is not a GRID sentence code (six letters like 'bbaf2n')") from None


def read_grid_align(path: str | Path) -> list[Word]:
    """Words of a GRID .align file (`start end word` in 1/25000 s), silences left out."""
    words = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        start, end, word = parts
        if word != "sil" and word != "sp":
            words.append(Word(int(start) / GRID_ALIGN_UNITS_PER_S, int(end) / GRID_ALIGN_UNITS_PER_S, word))
    return words


class ForcedAligner:
    """pocketsphinx forced alignment of a known word sequence against 16 kHz mono speech."""

    SAMPLE_RATE = 16000

    def __init__(self) -> None:
        try:  # pocketsphinx is optional (the `train` extra): imported only when used
            from pocketsphinx import Decoder
        except ImportError:
            raise FacecastError("forced alignment needs pocketsphinx: pip install 'facecast[train]'") from None
        self._decoder = Decoder(loglevel="FATAL")

    def align(self, samples: np.ndarray, words: list[str]) -> list[Word]:
        """Start and end of each word (silences and fillers left out), in order."""
        pcm = (np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0) * 32767).astype(np.int16)
        decoder = self._decoder
        try:
            decoder.set_align_text(" ".join(words))
        except RuntimeError as exc:
            raise InputError(f"cannot align '{' '.join(words)}': {exc}") from None
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        out = []
        for segment in decoder.seg():
            word = segment.word.split("(")[0]  # alternative pronunciations read 'word(2)'
            if word.startswith("<") or word.startswith("[") or word == "sil":
                continue
            out.append(Word(segment.start_frame / SPHINX_FRAMES_PER_S,
                            (segment.end_frame + 1) / SPHINX_FRAMES_PER_S, word))
        if [w.word for w in out] != list(words):
            raise InputError(f"forced alignment found {' '.join(w.word for w in out) or 'nothing'} "
                             f"instead of '{' '.join(words)}'")
        return out
