"""Training the mouth-gap nets: they follow the clips' mouths; the model file gets their lip geometry."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import HELD_OUT_CLIPS
from facecast.dataset.av_offsets import OFFSETS_PATH, av_offset
from facecast.dataset.cache import clip_audio, load_clip
from facecast.evaluation.motion_quality import pearson
from facecast.motion import EXPRESSION_CHANNELS, resample_frames
from facecast.speech.learned import FPS, WEIGHTS_PATH, LearnedMotion, frame_audio
from facecast.speech.mouth_gap import GAP_GEOMETRY_KEY, LIVE_LOOKAHEAD, MouthGap
from facecast.training import mouth_gap
from facecast.training.mouth_gap import gap_per_coefficient, store_geometry, train_nets


def _frame_audio(rel: str, dataset: tuple[Path, Path]) -> tuple[np.ndarray, dict]:
    data, cache = dataset
    clip = load_clip(rel, cache)
    frames = len(resample_frames(np.asarray(clip["head"], np.float32), float(clip["fps"]), FPS))
    return frame_audio(clip_audio(clip, "logmel", data, cache), frames, "logmel"), clip


def test_training_follows_the_mouth_of_the_clips_it_learns(held_out_dataset: tuple[Path, Path]) -> None:
    """A few hundred steps on three GRID clips: the predicted gap follows their real mouths, and the in-speech
    closure output rises where their lips shut between open frames (the b, p, m of "bin", "place")."""
    data, cache = held_out_dataset
    clips = [load_clip(rel, cache) for rel in HELD_OUT_CLIPS[:3]]
    state = train_nets(clips, LIVE_LOOKAHEAD, steps=150, seeds=(0,), batch=16, data_dir=data, cache=cache,
                       progress=lambda line: None)
    net = MouthGap(state, gap_per_coefficient())
    r, inside, labelled = [], [], []
    for rel, clip in zip(HELD_OUT_CLIPS[:3], clips):
        audio, _ = _frame_audio(rel, held_out_dataset)
        real = resample_frames(clip["mouth_opening"][:, None].astype(np.float32), float(clip["fps"]), FPS,
                               count=len(audio))[:, 0]
        gap, _, closure = net.predict(audio)
        r.append(pearson(gap, real))
        inside.append(closure)
        labelled.append(mouth_gap._clip_targets(clip, data, cache)[3] > 0)
    assert np.mean(r) > 0.5, r
    closure, labels = np.concatenate(inside), np.concatenate(labelled)
    assert 0 < labels.mean() < 0.3
    assert closure[labels].mean() > closure[~labels].mean() + 0.1, (closure[labels].mean(), closure[~labels].mean())


def test_the_train_command_refuses_a_missing_model_at_once(tmp_path: Path) -> None:
    """One line and exit 1 before any training (it once trained for 14 minutes, then failed to save)."""
    result = subprocess.run([sys.executable, "-m", "facecast.training", "mouth-gap", "train", "--model",
                             str(tmp_path / "none.pt")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "step" not in result.stdout          # nothing trained
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr


def test_model_files_keep_the_lip_geometry_training_measures(tiny_model: Path, tmp_path: Path) -> None:
    """The lip geometry `MouthGap.apply` sets the jaw by is measured on the face model at training time and stored
    beside the nets: the shipped file's is exactly what training measures now (so its motion is unchanged);
    `store-geometry` adds it to a model file made before, changing nothing else."""
    geometry = gap_per_coefficient()
    assert geometry[EXPRESSION_CHANNELS.index("jawOpen")] > 0.2 and geometry.dtype == np.float64
    shipped = torch.load(WEIGHTS_PATH, weights_only=True)
    # equal to float64 rounding: numpy/OpenCV builds differ in the last bits of the near-zero entries (~1e-23)
    np.testing.assert_allclose(shipped[GAP_GEOMETRY_KEY].numpy(), geometry, rtol=1e-12, atol=1e-15)
    assert np.array_equal(torch.load(tiny_model, weights_only=True)[GAP_GEOMETRY_KEY].numpy(), geometry)
    old = {key: value for key, value in shipped.items() if key != GAP_GEOMETRY_KEY}
    torch.save(old, tmp_path / "old.pt")
    result = subprocess.run([sys.executable, "-m", "facecast.training", "mouth-gap", "store-geometry", "--model",
                             str(tmp_path / "old.pt")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    restored = torch.load(tmp_path / "old.pt", weights_only=True)
    assert set(restored) == set(shipped) and np.array_equal(restored[GAP_GEOMETRY_KEY].numpy(), geometry)
    assert all(torch.equal(restored["model"][k], v) for k, v in shipped["model"].items())
    shutil.copy2(tmp_path / "old.pt", tmp_path / "again.pt")
    assert np.array_equal(store_geometry(tmp_path / "again.pt"), geometry)
    assert set(LearnedMotion(tmp_path / "again.pt").mouth) == {2, 14}


def _split_clips(shared_data: Path) -> list[dict]:
    """Every talking clip of the shared data as {path, speaker}, by the split file (what the dataset cache keeps)."""
    from facecast.dataset.cache import list_clips, load_split, speaker_of

    speakers = load_split()
    return [{"path": rel, "speaker": speaker_of(rel, speakers).id} for rel, kind in list_clips(shared_data)
            if kind == "talking"]


def test_a_fold_refit_never_sees_the_fold(shared_data: Path) -> None:
    """`without_fold` (and `mouth-gap train --exclude-fold`) drops every clip of the fold's speakers and only
    those: the scored speakers are voices the refit nets never heard."""
    from facecast.dataset.folds import load_folds

    clips = [c for c in _split_clips(shared_data)]
    for index, fold in enumerate(load_folds(), start=1):
        kept = mouth_gap.without_fold(clips, index)
        dropped = [c for c in clips if c not in kept]
        assert {c["speaker"] for c in dropped} == set(fold)
        assert not {c["speaker"] for c in kept} & set(fold)
        assert all(c["path"].startswith("talking/wild/") for c in dropped)
        assert {"grid_s1", "lrc_ar"} <= {c["speaker"] for c in kept}


def test_speakers_count_once_when_windows_are_drawn(shared_data: Path) -> None:
    """Speaker-balanced sampling: each speaker's clips together are drawn as often as one speaker's, lrc_ar's
    (no speaker ids) as LRC_AR_PSEUDO_SPEAKERS; inside a speaker, by length."""
    from facecast.dataset.folds import LRC_AR_PSEUDO_SPEAKERS

    clips = [c for c in _split_clips(shared_data) if c["speaker"] in ("grid_s1", "lrc_ar", "reagan", "andrew_ng")]
    frames = [75 if "grid" in c["path"] else 30 if "lrc_ar" in c["path"] else 500 for c in clips]
    weights = mouth_gap.speaker_weights(clips, frames)
    share = {s: sum(w for w, c in zip(weights, clips) if c["speaker"] == s) for s in ("grid_s1", "lrc_ar", "reagan")}
    assert abs(sum(weights) - 1) < 1e-9
    assert share["grid_s1"] == pytest.approx(share["reagan"])
    assert share["lrc_ar"] == pytest.approx(LRC_AR_PSEUDO_SPEAKERS * share["reagan"])


def test_the_teacher_shapes_training_but_not_the_shipped_net(held_out_dataset: tuple[Path, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With the Whisper teacher's components as extra targets, training uses them (other weights than without),
    and the stored nets have only the runtime's outputs: the same size and the same inference as before."""
    pytest.importorskip("ctranslate2", reason="the optional `train` extra (Whisper teacher) is not installed")
    from facecast.speech.mouth_gap import OUTPUTS
    from facecast.training import teacher
    from facecast.training.mouth_gap import Recipe

    data, cache = held_out_dataset
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    teacher.build(HELD_OUT_CLIPS, data, progress=lambda line: None)
    clips = [load_clip(rel, cache) for rel in HELD_OUT_CLIPS]
    runs = [train_nets(clips, LIVE_LOOKAHEAD, steps=6, seeds=(0,), batch=4, data_dir=data, cache=cache,
                       progress=lambda line: None, recipe=Recipe(balance=True, augment="voice", teacher_dims=dims))
            for dims in (0, 8)]
    plain, taught = (run["nets"][0] for run in runs)
    assert taught["out.weight"].shape == plain["out.weight"].shape == (OUTPUTS, 128, 1)
    assert not torch.equal(taught["inp.weight"], plain["inp.weight"])
    audio, _ = _frame_audio(HELD_OUT_CLIPS[0], held_out_dataset)
    gap, shut, inside = MouthGap(runs[1], gap_per_coefficient()).predict(audio)
    assert len(gap) == len(audio) and np.isfinite(gap).all() and ((0 <= shut) & (shut <= 1)).all()
    # the diagnostic that hears the teacher: its inputs are the states' components after the log-mel, past the
    # clip's end the components of silence (a net that heard only them would predict the same there)
    heard = train_nets(clips, LIVE_LOOKAHEAD, steps=6, seeds=(0,), batch=4, data_dir=data, cache=cache,
                       progress=lambda line: None, recipe=Recipe(features="logmel+teacher"))
    assert heard["nets"][0]["inp.weight"].shape == (128, 160 + mouth_gap.TEACHER_INPUT_DIMS, 1)
    rows, future = mouth_gap.fold_inputs(clips[0], audio, heard)
    assert future == LIVE_LOOKAHEAD and rows.shape == (len(audio) + future, 160 + mouth_gap.TEACHER_INPUT_DIMS)
    assert np.array_equal(rows[: len(audio), :160], audio)
    taught = rows[:, 160:]
    assert np.abs(taught[: len(audio)]).std() > 0.3 and np.allclose(taught[-1], taught[-future])
    gap = MouthGap(heard, gap_per_coefficient()).target(rows, future)
    assert len(gap) == len(audio) and np.isfinite(gap).all()
    # the causal student of those components: it learns them (its error falls), hears no future (changing
    # the audio after frame 40 leaves frames up to 40 as they were), and the nets can hear it instead
    from functools import partial

    from facecast.training import student

    sources = []
    for clip in clips:
        frames = mouth_gap._clip_targets(clip, data, cache)[0]
        sources.append((frames, mouth_gap._teacher_frames(clip, len(frames))))
    untrained = student.train_student(sources, steps=1, batch=8, progress=lambda line: None)
    learned = student.train_student(sources, steps=60, batch=8, progress=lambda line: None)
    assert student.explained(learned, sources) > student.explained(untrained, sources) + 0.05
    later = audio.copy()
    later[41:] = np.random.default_rng(0).uniform(-4, 1, later[41:].shape)
    features = student.student_features(learned, audio)
    assert features.shape == (len(audio), student.DIMS)
    np.testing.assert_allclose(student.student_features(learned, later)[:41], features[:41], atol=1e-5)
    assert not np.allclose(student.student_features(learned, later)[41:], features[41:], atol=1e-3)
    front = partial(student.student_features, learned)
    state = train_nets(clips, LIVE_LOOKAHEAD, steps=4, seeds=(0,), batch=4, data_dir=data, cache=cache,
                       progress=lambda line: None, recipe=Recipe(features="student"), student=front)
    rows, future = mouth_gap.fold_inputs(clips[0], audio, state)
    assert rows.shape == (len(audio) + future, student.DIMS) and np.allclose(rows[: len(audio)], features)


def test_voice_augmentation_keeps_the_features_in_range() -> None:
    """Reverb, noise, EQ and the vocal-tract shift give features the runtime could see: dB / 20 in [-4, 1],
    the loud level where it was, and the words still in them (louder frames stay louder)."""
    rng = np.random.default_rng(0)
    level = np.clip(np.sin(np.linspace(0, 12, 89))[:, None] * 1.5 - 1.0 + rng.normal(0, 0.05, (89, 160)), -4, 1)
    for _ in range(20):
        out = mouth_gap._voice_augmented(level.astype(np.float32), rng)
        assert out.shape == level.shape and out.dtype == np.float32 and (-4 <= out).all() and (out <= 1).all()
        loud = np.percentile(out.reshape(-1, 40).mean(1), 95)
        assert abs(loud - np.percentile(level.reshape(-1, 40).mean(1), 95)) < 0.3
        assert pearson(out.mean(1), level.mean(1)) > 0.5


def test_band_normalised_nets_ignore_the_microphone(held_out_dataset: tuple[Path, Path]) -> None:
    """Nets trained on band-normalised frames (Recipe.normalise) carry the training voice's band statistics
    and normalise what they hear the same way: a microphone's colour (+-6 dB per band) barely moves their
    gap, while it moves the plain nets' (trained the same, without normalisation) several times more."""
    from facecast.training.mouth_gap import Recipe

    data, cache = held_out_dataset
    clips = [load_clip(rel, cache) for rel in HELD_OUT_CLIPS]
    audio, _ = _frame_audio(HELD_OUT_CLIPS[3], held_out_dataset)
    coloured = audio + np.tile(np.random.default_rng(1).uniform(-0.3, 0.3, 40), 4).astype(np.float32)
    moved = {}
    for kind in ("", "utterance"):
        state = train_nets(clips, LIVE_LOOKAHEAD, steps=40, seeds=(0,), batch=16, data_dir=data, cache=cache,
                           progress=lambda line: None, recipe=Recipe(normalise=kind))
        assert ("normalise" in state) == bool(kind)
        net = MouthGap(state, gap_per_coefficient())
        gap = net.predict(audio)[0]
        moved[kind] = np.abs(net.predict(coloured)[0] - gap).mean() / gap.std()
    assert state["normalise"]["mean"].shape == (40,) and (state["normalise"]["var"] > 0).all()
    assert moved["utterance"] < 0.5 * moved[""], moved


def test_the_shipped_nets_are_what_their_recipes_train() -> None:
    """The shipped offline and live nets hear, close, smooth and were trained for what `mouth-gap train`'s recipes
    say (600 steps and four seeds offline, 2,000 steps and two seeds live), so the training command reproduces
    them."""
    from facecast.speech.learned import read_model
    from facecast.speech.mouth_gap import OFFLINE_LOOKAHEAD

    nets = read_model(WEIGHTS_PATH)["mouth"]
    for look, recipe in ((OFFLINE_LOOKAHEAD, mouth_gap.OFFLINE_RECIPE), (LIVE_LOOKAHEAD, mouth_gap.RECIPE)):
        state = nets[str(look)]
        assert int(state["steps"]) == recipe.steps and state.get("features", "logmel") == recipe.features
        assert bool(state.get("in_speech_closure", True)) == recipe.in_speech_closure
        assert float(state.get("target_smoothing", 0.0)) == recipe.target_smoothing
        assert float(state.get("closure_exponent", 4.0)) == recipe.closure_exponent
        groups = len(recipe.encoders) if recipe.features.endswith("whisper") else 1
        assert len(state["nets"]) == len(recipe.seeds) * groups
        assert tuple(state.get("whisper_encoders", ())) == (recipe.encoders if groups > 1 else ())
    assert mouth_gap.OFFLINE_RECIPE.steps < mouth_gap.RECIPE.steps


def test_groups_of_nets_hearing_different_encoders_are_averaged_as_one_ensemble() -> None:
    """`combine_groups`: nets that heard one encoder's components each, stored as one ensemble hearing the
    encoders side by side, predict what the groups' nets predict on their own inputs, averaged; groups trained
    for other lookaheads are refused."""
    from facecast.errors import FacecastError
    from facecast.speech.mouth_gap import FRAME_DIMS, build_net

    rng = np.random.default_rng(0)

    def group(name: str, width: int, seed: int) -> dict:
        torch.manual_seed(seed)
        nets = [{k: v.detach().clone() for k, v in build_net(inputs=FRAME_DIMS + 8).state_dict().items()}
                for _ in range(2)]
        projection = {"mean": torch.from_numpy(rng.normal(size=width)),
                      "components": torch.from_numpy(rng.normal(size=(8, width))),
                      "scale": torch.from_numpy(rng.uniform(1, 2, 8))}
        return {"lookahead": 14, "mean": 0.02, "std": 0.03, "nets": nets, "steps": 600, "in_speech_closure": False,
                "target_smoothing": 1.0, "features": "logmel+whisper", "whisper_encoders": [name],
                "whisper_input": projection}

    tiny, base = group("tiny.en", 384, 0), group("base", 512, 1)
    both = mouth_gap.combine_groups([tiny, base])
    assert both["whisper_encoders"] == ["tiny.en", "base"] and len(both["nets"]) == 4
    audio = rng.normal(size=(60, FRAME_DIMS)).astype(np.float32)
    states = rng.normal(size=(60, 384 + 512)).astype(np.float32)
    geometry = gap_per_coefficient()
    alone = [MouthGap(g, geometry) for g in (tiny, base)]
    gaps = [net.predict(net.inputs(audio, part))[0] for net, part in zip(alone, (states[:, :384], states[:, 384:]))]
    joined = MouthGap(both, geometry)
    assert joined.encoders == ("tiny.en", "base")
    np.testing.assert_allclose(joined.predict(joined.inputs(audio, states))[0], np.mean(gaps, 0), atol=1e-5)
    with pytest.raises(FacecastError, match="lookahead"):
        mouth_gap.combine_groups([tiny, {**base, "lookahead": 2}])


def test_a_clip_whose_sound_is_late_has_its_mouth_targets_moved_in_step(held_out_dataset: tuple[Path, Path],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed recording's mouth frames go with the sound heard when they were filmed: 2 frames late, frame t's
    target is the mouth filmed at t - 2, and the two frames left without one count as without a face."""
    data, cache = held_out_dataset
    clip = load_clip(HELD_OUT_CLIPS[3], cache)
    monkeypatch.setattr(mouth_gap, "av_offset", lambda path: 2 if path == str(clip["path"]) else 0)
    audio, gap, shut, _, found = mouth_gap._clip_targets(clip, data, cache)
    raw_audio, raw_gap, raw_shut, _, raw_found = mouth_gap._clip_targets(clip, data, cache, aligned=False)
    np.testing.assert_array_equal(audio, raw_audio)                           # the sound stays where it is
    np.testing.assert_array_equal(gap[2:], raw_gap[:-2])
    np.testing.assert_array_equal(shut[2:], raw_shut[:-2])
    assert not found[:2].any() and (found[2:] == raw_found[:-2]).all()


def test_the_offsets_name_real_recordings_and_the_rest_are_in_step(shared_data: Path) -> None:
    data = json.loads(OFFSETS_PATH.read_text(encoding="utf-8"))
    for path, late in data["clips"].items():
        assert (shared_data / path).is_file() and abs(late) >= 2 and av_offset(path) == late
    for prefix, late in data["corpora"].items():
        assert (shared_data / prefix).is_dir() and av_offset(prefix + "any.mp4") == late
    assert av_offset("talking/grid_s1/bbaf2n.mp4") == 0 and av_offset("/home/me/videos/stream.mp4") == 0
