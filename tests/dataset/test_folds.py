"""Speaker folds over the in-the-wild training speakers (dataset/folds.py, folds.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from facecast.dataset.cache import load_split
from facecast.dataset.folds import FOLDS_PATH, fold_text, load_folds, make_folds, wild_training_speakers


def test_the_committed_folds_are_the_seeded_folds_of_the_split() -> None:
    assert FOLDS_PATH.read_text(encoding="utf-8") == fold_text()      # regenerate: python -m facecast.dataset.folds
    speakers = load_split()
    folds = load_folds()
    assert len(folds) >= 3
    members = [s for fold in folds for s in fold]
    assert sorted(members) == wild_training_speakers(speakers) and len(set(members)) == len(members)
    validation = {s.id for s in speakers if s.split == "validation"}
    assert not validation & set(members) and not {"grid_s1", "lrc_ar"} & set(members)
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert make_folds(speakers, seed=1) != folds                      # the seed decides, and is fixed
    with pytest.raises(ValueError, match="need 2 <= k"):
        make_folds(speakers, k=1)


def test_fold_summary_gives_mean_spread_and_weakest_fold(tmp_path: Path) -> None:
    runs = []
    for i, r in enumerate((0.5, 0.3, 0.4)):
        clips = [{"speaker": f"s{i}a", "group": "wild", "mouth_r": r}, {"speaker": f"s{i}b", "group": "wild",
                                                                       "mouth_r": r}]
        runs.append(tmp_path / f"f{i}.json")
        runs[-1].write_text(json.dumps({"clips": {"cand": clips}}))
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality.py"), "--fold-summary", *map(str, runs)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("| cand"))
    assert [c.strip() for c in row.split("|")[2:-1]] == ["0.500", "0.300", "0.400", "0.400", "0.082", "0.300"]
