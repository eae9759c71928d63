"""Motion quality measurements and the quality benchmark, on real held-out clips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import HELD_OUT_CLIPS, REPO
from facecast.dataset.cache import load_clip
from facecast.evaluation.motion_quality import (
    GENERATORS,
    SHUT_DEPTH,
    blink_depths,
    blinks_per_minute,
    correlation_at,
    head_motion,
    jitter,
    lagged_correlation,
    loudness_motion,
    measure_frames,
    pearson,
    speaker_scores,
    speaker_weighted,
    word_closures,
)
from facecast.motion import Blink, HeadPose, MotionFrame

GRID_CLIP = HELD_OUT_CLIPS[0]


def test_lagged_correlation_finds_a_known_delay_of_a_real_mouth(held_out_dataset: tuple[Path, Path]) -> None:
    real = load_clip(HELD_OUT_CLIPS[3], held_out_dataset[1])["mouth_opening"].astype(float)
    late = np.concatenate([np.full(4, real[0]), real[:-4]])
    r0, lag = lagged_correlation(late, real)
    assert lag == 4 and r0 < 0.95
    assert correlation_at(late, real, 4) == pytest.approx(1.0)
    assert correlation_at(late, real, -4) < r0
    assert lagged_correlation(real, real) == (pytest.approx(1.0), 0)


def test_real_grid_speakers_close_their_lips_on_b_p_m_more_than_on_other_words(
        held_out_dataset: tuple[Path, Path]) -> None:
    bilabial, other = [], []
    for rel in HELD_OUT_CLIPS[:3]:
        clip = load_clip(rel, held_out_dataset[1])
        b, o = word_closures(clip["mouth_opening"], float(clip["fps"]), clip["words"], clip["word_start"],
                             clip["word_end"])
        bilabial += b
        other += o
    assert len(bilabial) >= 3 and len(other) >= 9
    assert np.mean(bilabial) >= 0.75 and np.mean(bilabial) > np.mean(other) + 0.25


def test_head_motion_speed_spread_and_jitter() -> None:
    fps = 25.0
    t = np.arange(250) / fps
    head = np.zeros((250, 6))
    assert head_motion(head, fps) == (0.0, 0.0) and jitter(head, fps) == 0.0
    head[:, 0] = 5.0 * np.sin(2 * np.pi * 0.5 * t)  # yaw: 5° amplitude at 0.5 Hz
    speed, spread = head_motion(head, fps)
    assert speed == pytest.approx(4 * 5.0 * 0.5, rel=0.05)      # mean |d/dt| of A sin = 4 A f (smoothing keeps 97 %)
    assert spread == pytest.approx(5.0 / np.sqrt(2) / 3, rel=0.02)  # yaw's sd, averaged with still pitch and roll
    shaky = head.copy()
    shaky[::2, 1] += 0.5
    assert jitter(head, fps) < 0.1 and jitter(shaky, fps) > 0.2  # a ±0.25° flicker about the path
    assert head_motion(shaky, fps)[0] == pytest.approx(speed, rel=0.1)  # shake is not motion


def test_blinks_are_counted_once_each_and_wobble_is_not_a_blink() -> None:
    fps = 25.0
    closure = np.zeros(300)                      # 12 s
    for start in (25, 100, 200):
        closure[start:start + 4] = [0.5, 1.0, 1.0, 0.5]
    blink = np.stack([closure, closure], 1)
    assert blinks_per_minute(blink, fps) == pytest.approx(15.0)
    wobble = 0.55 + 0.1 * np.sin(np.arange(300))  # a mouth-driven change of eye measure, never closed
    assert blinks_per_minute(np.stack([wobble, wobble], 1), fps) == 0.0


def test_rendered_output_is_measured_as_the_motion_says(sample_portrait: Path) -> None:
    """The measurement path of the benchmark: render the loudness baseline, measure the frames with the mesh."""
    from facecast.face.portrait import analyze_portrait
    from facecast.render.renderer import Renderer

    fps, frames = 25.0, 50
    t = np.arange(int(2.0 * 16000)) / 16000
    bursts = np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0.3)  # three syllable-like bursts
    motion = loudness_motion(bursts, fps, frames)
    jaw = np.array([f.expression("jawOpen") for f in motion])
    renderer = Renderer(analyze_portrait(sample_portrait, size=256), device="cpu")
    measured = measure_frames((renderer.render(f)[:, :, :3] for f in motion), fps)
    assert measured.found.all()
    assert pearson(measured.mouth_opening, jaw) > 0.9
    assert np.median(np.abs(measured.head[:, :3])) < 1.5  # the baseline never moves the head (mesh noise only)
    turned = [MotionFrame(t=i / fps, head=HeadPose(yaw=12.0 * np.sin(i / 8))) for i in range(frames)]
    yaw = measure_frames((renderer.render(f)[:, :, :3] for f in turned), fps).head[:, 0]
    assert pearson(yaw, [f.head.yaw for f in turned]) > 0.9


def test_a_rendered_blink_is_read_both_ways(shared_data: Path) -> None:
    """The benchmark reads each blink's depth along the mesh's lid points and across the eye only: on a photo's
    rendered blink (one, held shut for five frames) the across reading is the deeper and reaches SHUT_DEPTH."""
    from facecast.face.portrait import analyze_portrait
    from facecast.media import load_image
    from facecast.render.renderer import Renderer

    fps, frames = 25.0, 40
    renderer = Renderer(analyze_portrait(load_image(shared_data / "portraits" / "liveportrait_s1.jpg"), size=256),
                        device="cpu")
    closure = np.interp(np.arange(frames), [0, 20, 24, 28, 32, frames], [0, 0, 1, 1, 0, 0])
    blinking = [MotionFrame(t=i / fps, blink=Blink(c, c)) for i, c in enumerate(closure)]
    eyes = measure_frames((renderer.render(f)[:, :, :3] for f in blinking), fps)
    straight, across = blink_depths(eyes.eye_openness), blink_depths(eyes.eye_openness_across)
    assert len(straight) == len(across) == 1
    assert across[0] < straight[0] and across[0] <= SHUT_DEPTH


def test_every_generator_gives_exactly_the_video_frame_count(sample_speech: Path) -> None:
    from facecast.media import decode_mono

    samples = decode_mono(sample_speech)[: 16000 * 2]
    for name, generator in GENERATORS.items():
        for fps, frames in ((25.0, 50), (30.0, 61)):
            motion = generator(samples, fps, frames)
            assert len(motion) == frames, name


def test_quality_benchmark_prints_one_table_with_every_generator(held_out_dataset: tuple[Path, Path],
                                                                tiny_model: Path) -> None:
    data, cache = held_out_dataset
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--data", str(data), "--cache", str(cache),
         "--workers", "1", "--model", f"tiny={tiny_model}"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "3 GRID s4 clips + 1 in-the-wild clips" in result.stdout
    tables, title = {}, ""
    for line in result.stdout.splitlines():
        if line and not line.startswith("|"):
            title = line
        elif line.startswith("| "):
            cells = [c.strip() for c in line.split("|")[1:-1]]
            tables.setdefault(title, {})[cells[0]] = cells[1:]
    wild, grid, per_speaker = (next(t for name, t in tables.items() if name.startswith(start)) for start in
                               ("In-the-wild held-out speakers (the headline): 1 speakers, 1 clips",
                                "GRID s4 (a held-out studio speaker): 1 speakers, 3 clips", "Mouth r per"))
    for rows in (wild, grid, per_speaker):
        assert set(rows) == {"generator", "real", "tiny", *GENERATORS}
    column = {title: i for i, title in enumerate(wild["generator"])}
    assert wild["real"][0] == grid["real"][0] == "1.000"          # the real video against itself
    assert wild["real"][column["motion °/s"]] == wild["real"][column["head °/s"]]   # real motion is what was measured
    assert wild["tiny"][column["weakest speaker"]] == per_speaker["generator"][0].split(" ")[0]
    steady = result.stdout.split("Steadiness and blinks")[1]
    steady_rows = [[c.strip() for c in line.split("|")[1:-1]] for line in steady.splitlines() if line.startswith("| ")]
    steady_column = {title: i for i, title in enumerate(steady_rows[0])}
    groups = {(row[0], row[steady_column["group"]]): row for row in steady_rows[1:]}
    assert set(groups) == {(name, group) for name in ("real", "tiny", *GENERATORS) for group in ("wild", "grid")}
    assert float(groups["real", "grid"][steady_column["Δrot °/frame"]]) > 0
    for name in [*GENERATORS, "tiny"]:
        assert -1.0 <= float(wild[name][0]) <= 1.0 and -1.0 <= float(grid[name][0]) <= 1.0
        assert wild[name][column["face %"]] == "100.0%"    # the face was found in every output frame
        assert float(wild[name][column["motion spread °"]]) >= 0
        assert float(wild[name][column["motion blinks/min"]]) >= 0
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality.py"), "--model", "x=/no/such.pt"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "NAME=WEIGHTS" in bad.stderr


REAL_ROWS = ("extracted", "extracted-gap", "extracted-still")


def test_real_motion_re_rendered_follows_the_real_mouth(held_out_dataset: tuple[Path, Path]) -> None:
    """The quality benchmark's renderer-ceiling rows: each clip's own extracted motion, whole, reduced to its gap
    (the articulators' share given to the jaw) and with the head held still, played on its first frame, follows
    the real mouth closely, and is in step with the recording as it is (its AV-aligned r is its mouth r)."""
    data, cache = held_out_dataset
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--data", str(data), "--cache", str(cache),
         "--workers", "1", "--clips", "2", "--generators", "extracted,extracted-gap,extracted-still"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("| extracted")]
    assert {row[0] for row in rows} == set(REAL_ROWS) and len(rows) >= 6   # both groups' tables
    for row in rows[:6]:
        assert float(row[1]) > 0.8 and row[2] == row[1], row


def _record(speaker: str, r: float, **scores: float) -> dict:
    return {"speaker": speaker, "group": "wild", "mouth_r": r, **scores}


def test_summaries_count_each_speaker_once_whatever_its_number_of_clips() -> None:
    # one speaker with five good clips, two with one poor clip each: clip-weighted r would be 0.6
    clips = [_record("many", 0.9, blinks=2.0, minutes=1.0) for _ in range(5)]
    clips += [_record("one", 0.0, blinks=0.0, minutes=0.5), _record("two", 0.3, blinks=10.0, minutes=1.0)]
    row = speaker_weighted(clips)
    assert row["speakers"] == 3 and row["clips"] == 7
    assert row["mouth_r"] == pytest.approx(0.4)                      # (0.9 + 0.0 + 0.3) / 3
    assert (row["weakest"], row["weakest_r"]) == ("one", 0.0)
    assert row["blinks_per_min"] == pytest.approx((2.0 + 0.0 + 10.0) / 3)   # each speaker's own rate, then the mean
    per = speaker_scores(clips)
    assert per["many"]["mouth_r"] == pytest.approx(0.9) and np.isnan(per["one"]["closed_bilabial"])


def test_the_share_of_shut_blinks_pools_each_speakers_dips_then_the_speakers() -> None:
    """Issue 18's "each blink closing to <= 0.2": a speaker's dips pooled over its clips, then each speaker once;
    a speaker without a dip has no share (not 0 %)."""
    clips = [_record("a", 0.5, shut_dips=1.0, blink_dips=4.0), _record("a", 0.5, shut_dips=3.0, blink_dips=4.0),
             _record("b", 0.5, shut_dips=0.0, blink_dips=2.0), _record("c", 0.5, shut_dips=0.0, blink_dips=0.0)]
    per = speaker_scores(clips)
    assert per["a"]["blinks_shut"] == pytest.approx(0.5) and per["b"]["blinks_shut"] == 0.0
    assert np.isnan(per["c"]["blinks_shut"])
    assert speaker_weighted(clips)["blinks_shut"] == pytest.approx(0.25)


def test_summaries_skip_unscored_clips_and_pool_medians_per_speaker() -> None:
    clips = [_record("a", 0.5, lag=1.0, sync_conf=float("nan")), _record("a", 0.7, lag=3.0, sync_conf=0.2),
             _record("b", float("nan"), lag=-2.0, sync_conf=0.1)]
    row = speaker_weighted(clips)
    assert row["mouth_r"] == pytest.approx(0.6) and row["weakest"] == "a"   # b has no finite r: not the weakest
    assert row["sync_conf"] == pytest.approx(0.15)
    assert row["lag"] == pytest.approx(0.0)                          # median of the speakers' medians 2 and -2


def test_sync_shape_scores_re_rendered_lips_with_each_part_of_the_real_motion(held_out_dataset: tuple[Path, Path]
                                                                              ) -> None:
    """`benchmarks/sync_shape.py --rendered`: one row per variant of the re-rendered lips, and replacing a part of
    their motion with the real lips' changes the score (the variants are built, not copies of one another)."""
    data, cache = held_out_dataset
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sync_shape.py"), "--rendered", "--data", str(data),
         "--cache", str(cache), "--workers", "1"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "(4 held-out clips, speaker-weighted)" in result.stdout
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("|")[1:-1]]
                                              for line in result.stdout.splitlines() if line.startswith("| "))}
    variants = ["real", "rendered", "rendered, real corners", "rendered, real outer upper lip",
                "rendered, real outer lower lip", "rendered, real inner upper lip", "rendered, real inner lower lip",
                "rendered, real x", "rendered, real y", "rendered, scaled to real spread"]
    assert list(rows) == ["lips", *variants]
    grid = {name: float(rows[name][2]) for name in variants}      # the three GRID s4 clips' speaker
    assert all(-1.0 <= value <= 1.0 for value in grid.values())
    assert len({round(value, 4) for value in grid.values()}) >= 5
    assert grid["real"] != grid["rendered"]
