"""Speaker folds for the mouth-gap nets: which training recipe follows voices it never heard (issue 19).

    python benchmarks/mouth_gap_folds.py --candidates shipped,balanced,voice,teacher --steps 800 --json out.json

For each fold of `src/facecast/dataset/folds.json` and each candidate recipe
(`training.mouth_gap.Recipe`), the offline mouth-gap net is refit without that
fold's speakers (`mouth_gap.without_fold`) and scored on their clips at the
motion level: the gap the net asks the lips for (`MouthGap.target`) against the
mouth opening measured on the real video, per clip Pearson r over the frames
with a face, pooled per speaker, then every speaker once (speaker-weighted);
mouth size: the 90th percentile of the predicted over the real gap. This is a
proxy for the rendered quality benchmark (`benchmarks/quality.py --fold I`),
which renders and re-measures the face: a rendered r is lower (the renderer and
the face mesh add their own noise) but follows this one. One seed per net and a
shorter training than the shipped nets', the same for every candidate.

Candidates beyond the first round: "teacher_input" / "logmel_teacher_input" hear Whisper's cached
states (a diagnostic: no runtime can run Whisper), "student" / "logmel_student" a causal student of them
(`training.student`, trained once into --students when missing, on the speech of no fold speaker),
"cmvn_utterance" / "cmvn_stream" band-normalised log-mel (`speech.mouth_gap.BandNormaliser`), "encoder" /
"logmel_encoder" the states of Whisper's encoder made to stream (`training.streaming_encoder`, cached by
`python -m facecast.training.speech_encoder --cache`, from the weights that command writes: as is, or
`--distil STEPS`); "logmel_whisper" (the shipped offline recipe) log-mel and the shipped full-context encoders'
states, each recording encoded alone as `facecast render` encodes it (`--cache whisper [--encoder base]`), a
group of nets hearing Whisper tiny.en's and one hearing base's, averaged, the in-speech closure output trained
but not applied, the opening smoothed over a frame (`Recipe.target_smoothing`); "logmel_whisper_tiny" and
"logmel_whisper_base" one of those groups alone; "logmel_whisper_closing" the same with the closure applied,
"logmel_whisper_unsmoothed" without the smoothing (the fifth round's recipe).

    python benchmarks/mouth_gap_folds.py --candidates logmel_whisper --steps 600 --closure-exponents 2,4,8
    python benchmarks/mouth_gap_folds.py --candidates logmel_whisper --steps 600 --seeds 0,1,2,3   # as shipped

also scores each fold's net with its closures applied as gap * (1 - p ** E) for each E
(`speech.mouth_gap.CLOSURE_EXPONENT`; no refit): r, size, and how often the lips close while the
speaker's voice is heard (closures per second of voiced frames, a closure being the benchmark's
"closed": at or below `motion_quality.closed_level` of the clip's own opening), beside the
real mouth's rate on the same frames.

A "loudness" row is the r of the clip's loudness envelope (the mean log-mel
band level per frame) against the mouth: the floor any recipe must clear.

    python benchmarks/mouth_gap_folds.py --languages before.pt after.pt

The sanity check on speech in other languages (shared/data/audio, no video, so
no real mouth): per file and model file, the offline nets' gap during voiced
frames, during pauses (frames 120 ms or more from any voiced one) as a share of
it, and its r with the loudness envelope (a mouth that follows the voice at
all correlates with it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from facecast.dataset import cache as dataset  # noqa: E402
from facecast.dataset.folds import load_folds  # noqa: E402
from facecast.evaluation.motion_quality import closed_level  # noqa: E402
from facecast.motion import resample_frames  # noqa: E402
from facecast.speech.mouth_gap import FPS, OFFLINE_LOOKAHEAD, MouthGap  # noqa: E402
from facecast.training.mouth_gap import OFFLINE_RECIPE, Recipe, _clip_targets, fold_inputs, train_nets, without_fold  # noqa: E402

CANDIDATES = {
    "shipped": Recipe(),
    "balanced": Recipe(balance=True),
    "voice": Recipe(balance=True, augment="voice"),
    "teacher": Recipe(balance=True, teacher_dims=32),
    "teacher_voice": Recipe(balance=True, augment="voice", teacher_dims=32),
    "teacher_clip": Recipe(teacher_dims=32),
    "voice_clip": Recipe(augment="voice"),
    "teacher_strong": Recipe(teacher_dims=64, teacher_weight=2.0),
    # diagnostics, never shipped: Whisper's states (30 s of context both ways) as what the net hears
    "teacher_input": Recipe(features="teacher"),
    "logmel_teacher_input": Recipe(features="logmel+teacher"),
    # band normalisation (`speech.mouth_gap.BandNormaliser`): per clip (offline), and its streaming form
    "cmvn_utterance": Recipe(normalise="utterance"),
    "cmvn_stream": Recipe(normalise="stream"),
    # a causal student of the teacher (`training.student`), which never heard any fold's speakers
    "student": Recipe(features="student"),
    "logmel_student": Recipe(features="logmel+student"),
    # Whisper's encoder made to stream (`training.streaming_encoder`: 2 s of causal local attention, no position
    # embedding), as is or distilled from the full-context teacher: a front-end a runtime could run
    "encoder": Recipe(features="encoder"),
    "logmel_encoder": Recipe(features="logmel+encoder"),
    # the shipped offline recipe: log-mel and the shipped full-context encoders' states (`speech.whisper_states`;
    # cached by `python -m facecast.training.speech_encoder --cache whisper`), each recording encoded alone, the
    # in-speech closure output trained but not applied, the opening smoothed; "..._closing" applies the closure,
    # "..._unsmoothed" does not smooth (the model card's fifth round)
    "logmel_whisper": OFFLINE_RECIPE,
    # one group of its nets alone: hearing Whisper tiny.en's states, or base's (the shipped recipe averages both)
    "logmel_whisper_tiny": replace(OFFLINE_RECIPE, encoders=("tiny.en",)),
    "logmel_whisper_base": replace(OFFLINE_RECIPE, encoders=("base",)),
    "logmel_whisper_closing": replace(OFFLINE_RECIPE, in_speech_closure=True),
    "logmel_whisper_unsmoothed": replace(OFFLINE_RECIPE, target_smoothing=0.0),
    # the shipped offline recipe trained on targets as recorded, not put in step with their sound
    # (`dataset.av_offsets`; every candidate is scored against the targets put in step)
    "logmel_whisper_unaligned": replace(OFFLINE_RECIPE, av_aligned=False),
}


#: A frame counts as voiced for `closure_rates` when the clip's voice level (`speech.voice`, 0..1) is above this.
VOICED_LEVEL = 0.1


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 5 and a.std() > 0 and b.std() > 0 else float("nan")


def score(predict, clips: list[dict]) -> dict:
    """Speaker-weighted r and mouth size of `predict(frame audio, clip) -> gap` on clips, with per-speaker r."""
    speakers: dict[str, list[tuple[float, float]]] = {}
    for clip in clips:
        audio, gap, _, _, found = _clip_targets(clip, None, None)
        if found.sum() < 10:
            continue
        predicted = predict(audio, clip)
        real = gap[found]
        size = float(np.percentile(predicted[found], 90) / max(np.percentile(real, 90), 1e-9))
        speakers.setdefault(str(clip["speaker"]), []).append((_r(predicted[found], real), size))
    per = {s: (float(np.nanmean([v[0] for v in vals])), float(np.median([v[1] for v in vals])))
           for s, vals in speakers.items()}
    return {"mouth_r": float(np.nanmean([v[0] for v in per.values()])),
            "mouth_size": float(np.median([v[1] for v in per.values()])),
            "speakers": {s: v[0] for s, v in per.items()}}


def closures_per_second(gap: np.ndarray, voiced: np.ndarray) -> float:
    """How often `gap` closes (enters the benchmark's "closed" band of its own range) on voiced frames, per second
    of them."""
    closed = (gap <= closed_level(gap)) & voiced
    onsets = int(closed[0]) + int(np.sum(closed[1:] & ~closed[:-1]))
    return onsets / max(int(voiced.sum()), 1) * FPS


def closure_rates(model: MouthGap, state: dict, clips: list[dict], exponents: list[float]) -> dict:
    """Per closure exponent: speaker-weighted r and size (as `score`) and closures per second of voice, generated
    and real, of a fold's net on its held-out clips."""
    speakers: dict[str, list[tuple]] = {}
    for clip in clips:
        audio, gap, _, _, found = _clip_targets(clip, None, None)
        if found.sum() < 10:
            continue
        voice = resample_frames(np.asarray(clip["voice"], np.float32)[:, None], float(clip["fps"]), FPS,
                                count=len(gap))[:, 0]
        voiced = (voice > VOICED_LEVEL)[found]
        real = gap[found]
        rows, future = fold_inputs(clip, audio, state)      # what the net hears: the same for every exponent
        row = [closures_per_second(real, voiced)]
        for exponent in exponents:
            predicted = model.target(rows, future, closure_exponent=exponent)[found]
            row += [_r(predicted, real), float(np.percentile(predicted, 90) / max(np.percentile(real, 90), 1e-9)),
                    closures_per_second(predicted, voiced)]
        speakers.setdefault(str(clip["speaker"]), []).append(tuple(row))
    per = np.array([np.nanmean(rows, axis=0) for rows in speakers.values()])
    means = per.mean(axis=0)
    return {"real_closures_per_s": float(means[0]),
            **{str(e): {"mouth_r": float(means[1 + 3 * i]), "mouth_size": float(np.median(per[:, 2 + 3 * i])),
                        "closures_per_s": float(means[3 + 3 * i])} for i, e in enumerate(exponents)}}


def loudness(audio: np.ndarray, clip: dict | None = None) -> np.ndarray:
    return audio.reshape(len(audio), -1, 40).mean((1, 2))


def languages(models: list[Path]) -> list[str]:
    """The other-languages table (see the module docstring), one row per speech file and model file."""
    from facecast.dataset.cache import DEFAULT_DATA
    from facecast.evaluation.non_speech import SPEECH_FILES, load_speech, voiced_frames
    from facecast.speech.learned import FPS, LearnedMotion, frame_audio, offline_states, speech_features

    models_loaded = {path: LearnedMotion(path) for path in models}
    nets = {path: model.mouth for path, model in models_loaded.items()}
    lines = ["| speech | " + " | ".join(f"{p.stem}: voiced gap, pause share, r loudness" for p in models) + " |"]
    for stem, language in SPEECH_FILES.items():
        samples = load_speech(DEFAULT_DATA, stem)
        count = int(len(samples) / 16000 * FPS)
        audio = frame_audio(speech_features(samples, "logmel"), count, "logmel")
        voiced = voiced_frames(samples, FPS, count)
        near = np.convolve(voiced.astype(float), np.ones(7), mode="same") > 0     # within 120 ms of a voiced frame
        cells = []
        for path in models:
            net = nets[path][max(nets[path])]
            gap = net.target(net.inputs(audio, offline_states(models_loaded[path], samples)[:count]
                                        if net.hears_whisper else None))
            pause = gap[~near].mean() / gap[voiced].mean() if (~near).sum() >= 5 else float("nan")
            cells.append(f"{gap[voiced].mean():.4f}, {pause:.0%}, {_r(gap, loudness(audio)):.2f}")
        lines.append(f"| {language} | " + " | ".join(cells) + " |")
    return lines


def fold_student(folder: Path, steps: int):
    """The student that never heard any fold's speakers, so one serves every fold (loaded from `folder`, or
    trained and kept there), as the front-end `train_nets` takes: frame audio -> its features."""
    from functools import partial

    import torch

    from facecast.training import student

    path = folder / "student.pt"
    if path.exists():
        state = torch.load(path, weights_only=True)
    else:
        sources = student.student_sources([speaker for fold in load_folds() for speaker in fold])
        state = student.train_student(sources, steps, progress=lambda m: print(m, file=sys.stderr))
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
    return partial(student.student_features, state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", default="shipped,balanced,voice,teacher")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--folds", default="1,2,3")
    parser.add_argument("--seeds", default="0", help="nets per candidate and fold, averaged (comma-separated "
                                                     "seeds; default one, seed 0)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--students", type=Path, default=Path.home() / ".cache" / "facecast" / "students",
                        help="where the student candidates' student is kept (trained when missing)")
    parser.add_argument("--student-steps", type=int, default=1000)
    parser.add_argument("--languages", nargs="+", type=Path, default=None, metavar="MODEL",
                        help="instead: the other-languages sanity check of these motion model files")
    parser.add_argument("--closure-exponents", default="",
                        help="also score each fold's net with these closure exponents (comma-separated)")
    args = parser.parse_args(argv)
    try:
        exponents = [float(e) for e in args.closure_exponents.split(",") if e]
    except ValueError:
        parser.error(f"--closure-exponents wants numbers separated by commas, got {args.closure_exponents!r}")
    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(","))
    except ValueError:
        parser.error(f"--seeds wants integers separated by commas, got {args.seeds!r}")
    if args.languages:
        print("\n".join(languages(args.languages)))
        return 0
    clips = [c for c in dataset.iter_clips(split="train", kind="talking") if len(c["audio"])]
    folds = load_folds()
    results: dict[str, dict[int, dict]] = {"loudness": {}}
    for fold in map(int, args.folds.split(",")):
        held = [c for c in clips if str(c["speaker"]) in set(folds[fold - 1])]
        results["loudness"][fold] = score(loudness, held)
        for name in args.candidates.split(","):
            started = time.monotonic()
            recipe = CANDIDATES[name]
            student = fold_student(args.students, args.student_steps) if "student" in recipe.features else None
            state = train_nets(without_fold(clips, fold), OFFLINE_LOOKAHEAD, args.steps, seeds=seeds,
                               recipe=recipe, progress=lambda m: print(m, file=sys.stderr), student=student)
            model = MouthGap(state, np.zeros(1))
            results.setdefault(name, {})[fold] = score(
                lambda audio, clip, model=model, state=state: model.target(*fold_inputs(clip, audio, state)), held)
            print(f"fold {fold} {name}: r {results[name][fold]['mouth_r']:.3f} size "
                  f"{results[name][fold]['mouth_size']:.2f} ({time.monotonic() - started:.0f} s)", flush=True)
            if exponents:
                results[name][fold]["closure_exponents"] = closure_rates(model, state, held, exponents)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    print("| recipe | " + " | ".join(f"fold {f}" for f in results["loudness"]) + " | mean | sd | weakest | size |")
    for name, per_fold in results.items():
        rs = [v["mouth_r"] for v in per_fold.values()]
        sizes = [v["mouth_size"] for v in per_fold.values()]
        print(f"| {name} | " + " | ".join(f"{r:.3f}" for r in rs)
              + f" | {np.mean(rs):.3f} | {np.std(rs):.3f} | {min(rs):.3f} | {np.median(sizes):.2f} |")
    for name, per_fold in results.items():
        if not exponents or name == "loudness":
            continue
        swept = [v["closure_exponents"] for v in per_fold.values()]
        print(f"\n| {name}: closure exponent | " + " | ".join(f"fold {f}" for f in per_fold)
              + " | mean | size | closures/s (real " + f"{np.mean([s['real_closures_per_s'] for s in swept]):.2f}) |")
        for e in map(str, exponents):
            rs = [s[e]["mouth_r"] for s in swept]
            print(f"| {e} | " + " | ".join(f"{r:.3f}" for r in rs) + f" | {np.mean(rs):.3f} | "
                  f"{np.median([s[e]['mouth_size'] for s in swept]):.2f} | "
                  f"{np.mean([s[e]['closures_per_s'] for s in swept]):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
