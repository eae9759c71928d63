"""Speaker folds over the training in-the-wild speakers: how candidates are compared before one final training.

Why: only four in-the-wild speakers are held out for validation (`split.json`),
too few to choose between speech representations or augmentations without
fitting the choice to them. The fifteen in-the-wild *training* speakers are cut
into K groups; a candidate is refit K times, each time without one group, and
scored on that group (`benchmarks/quality.py --fold I`), so every choice is
judged on voices its model never heard, and the validation speakers stay unseen
by every fold. The mean and spread over folds decide; the winner is then
trained once on all training speakers.

Only in-the-wild speakers rotate. GRID s1 (one studio speaker) and `lrc_ar`
(dozens of Arabic anchors without speaker ids, so none can be guaranteed out of
a fold) train in every fold; when training weights speakers equally, `lrc_ar`
counts as LRC_AR_PSEUDO_SPEAKERS speakers (its 2004 word clips are ~41 min of
several dozen anchors: a fixed number, so adding clips never outweighs the
named speakers).

The folds are written to `folds.json` (committed, like the split) by
`python -m facecast.dataset.folds`, from the split's speakers with a fixed seed,
so every run and every helper compares on the same folds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from facecast.dataset.cache import Speaker, load_split

FOLDS_PATH = Path(__file__).resolve().parent / "folds.json"
FOLDS = 3
SEED = 19
LRC_AR_PSEUDO_SPEAKERS = 4


def wild_training_speakers(speakers: list[Speaker]) -> list[str]:
    """Ids of the training speakers with in-the-wild talking clips, sorted."""
    return sorted(s.id for s in speakers
                  if s.split == "train" and any(p.startswith("talking/wild/") for p in s.clips))


def make_folds(speakers: list[Speaker], k: int = FOLDS, seed: int = SEED) -> list[list[str]]:
    """`k` disjoint groups of the in-the-wild training speakers, as even in size as can be: the sorted ids
    shuffled by `seed`, then dealt round-robin (each fold sorted)."""
    ids = wild_training_speakers(speakers)
    if not 2 <= k <= len(ids):
        raise ValueError(f"need 2 <= k <= {len(ids)} (the in-the-wild training speakers), got {k}")
    order = np.random.default_rng(seed).permutation(len(ids))
    return [sorted(ids[i] for i in order[f::k]) for f in range(k)]


def load_folds(path: Path = FOLDS_PATH) -> list[list[str]]:
    """The committed folds: a list of speaker-id lists."""
    return [list(fold) for fold in json.loads(path.read_text(encoding="utf-8"))["folds"]]


def fold_text(k: int = FOLDS, seed: int = SEED) -> str:
    """The contents of folds.json for the current split."""
    return json.dumps({
        "about": "Speaker folds over the in-the-wild training speakers of split.json (facecast.dataset.folds): "
                 "refit a candidate without one fold, score it on that fold, rotate; the validation speakers are in "
                 "no fold. grid_s1 and lrc_ar train in every fold. Regenerate: python -m facecast.dataset.folds",
        "k": k, "seed": seed, "lrc_ar_pseudo_speakers": LRC_AR_PSEUDO_SPEAKERS,
        "folds": make_folds(load_split(), k, seed),
    }, indent=1) + "\n"


if __name__ == "__main__":
    FOLDS_PATH.write_text(fold_text(), encoding="utf-8")
    print(f"wrote {FOLDS_PATH}", file=sys.stderr)
