"""Voice gate benchmark: how far each generator opens the mouth on sound that is not speech, and on speech.

    python benchmarks/voice_gate.py                 # rule, learned (render) and learned-live, gate on and off
    python benchmarks/voice_gate.py --generators rule --gate on
    python benchmarks/voice_gate.py --held-out --generators rule,learned   # does the gate cost lip sync?
    python benchmarks/voice_gate.py --lip-lead      # how far ahead of their first word real speakers part lips

For each generator as render and live run it (`make_generator`): the mouth
opening (how far the frame's expressions part the rendered lips,
`evaluation.non_speech.mouth_opening`) during the voiced frames of speech in
every language of shared/data/audio (clean recordings: the speech level), and
its mean over synthesised non-speech sound (white and pink noise, keyboard
clicks, music, breathing) and over the pauses of the two noisy recordings.
Non-speech openings are given as a share of the generator's speech level (its
mean over the languages); the target is <= 10 %. The speech table says whether
speech in each language still opens the mouth as far as without the gate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from facecast.dataset.cache import DEFAULT_DATA
from facecast.evaluation.non_speech import (
    NOISY_FILES,
    NOISY_PAUSES_S,
    NON_SPEECH,
    SPEECH_FILES,
    in_spans,
    load_speech,
    mouth_opening,
    voiced_frames,
)
from facecast.speech.generator import exactly, generate_offline, make_generator
from facecast.speech.learned import WEIGHTS_PATH, read_model
from facecast.speech.mouth_gap import GAP_GEOMETRY_KEY

FPS = 25.0
#: Long recordings are cut to this much (s): the table is about the mouth, not endurance.
MAX_SECONDS = 20.0
MODES = {"rule": ("rule", False), "learned": ("learned", False), "learned-live": ("learned", True)}


def opening(mode: str, samples: np.ndarray, gate: bool, per_coefficient: np.ndarray) -> np.ndarray:
    """(frames,) the mouth opening of `mode`'s motion for `samples`, as render (whole clip) or live (10 ms
    blocks) runs it."""
    name, live = MODES[mode]
    count = max(1, round(len(samples) / 16000 * FPS))
    generator = make_generator(name, fps=FPS, streaming=live, voice_gate=gate,
                               **({} if live else {"frames": count}))
    if live:
        frames = []
        for start in range(0, len(samples), 160):
            frames += generator.push(samples[start:start + 160])
        frames = list(exactly(frames + list(generator.finish()), FPS, count))
    else:
        frames = list(generate_offline(generator, [samples]))
    return mouth_opening(frames, per_coefficient)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generators", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--gate", choices=("on", "off", "both"), default="both")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=MAX_SECONDS,
                        help=f"cut each speech recording to this long (default {MAX_SECONDS:g})")
    parser.add_argument("--held-out", action="store_true",
                        help="instead: lip sync (motion's own mouth r) on the held-out clips, gate on and off "
                             "(render modes; needs the dataset cache)")
    parser.add_argument("--lip-lead", action="store_true",
                        help="instead: how long before their first word real speakers part their lips (clips "
                             "with word timings; needs the dataset cache); it sets where a pause ends")
    args = parser.parse_args(argv)
    if args.lip_lead:
        return lip_lead()
    import torch

    torch.set_num_threads(1)   # one core's numbers, and no oversubscription on a shared machine
    modes = [m.strip() for m in args.generators.split(",") if m.strip()]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown generator(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.held_out:
        return held_out_sync(modes, args.data)
    gates = {"on": [True], "off": [False], "both": [False, True]}[args.gate]
    per_coefficient = read_model(WEIGHTS_PATH)[GAP_GEOMETRY_KEY].numpy()
    started = time.perf_counter()
    speech = {stem: load_speech(args.data, stem)[: int(args.seconds * 16000)] for stem in SPEECH_FILES}
    noisy = {stem: load_speech(args.data, stem) for stem in NOISY_FILES}
    sounds = {name: make() for name, make in NON_SPEECH.items()}
    speech_rows, other_rows = [], []
    for mode in modes:
        for gate in gates:
            label = f"{mode}, gate {'on' if gate else 'off'}"
            levels = {}
            for stem, samples in speech.items():
                o = opening(mode, samples, gate, per_coefficient)
                levels[SPEECH_FILES[stem]] = float(o[voiced_frames(samples, FPS, len(o))].mean())
            level = float(np.mean(list(levels.values())))
            speech_rows.append((label, level, levels))
            shares = {name: float(opening(mode, x, gate, per_coefficient).mean()) / level for name, x in sounds.items()}
            for stem, samples in noisy.items():
                o = opening(mode, samples, gate, per_coefficient)
                shares[f"pauses: {NOISY_FILES[stem]}"] = float(o[in_spans(len(o), FPS, NOISY_PAUSES_S)].mean()) / level
            other_rows.append((label, shares))
            print(f"  {label}: {time.perf_counter() - started:.0f} s, speech {1000 * level:.1f}, "
                  + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()), file=sys.stderr, flush=True)
    languages = list(speech_rows[0][2])
    print(f"\nMouth opening during voiced speech (face heights x 1000; first {args.seconds:g} s of each file):\n")
    print("| generator | mean | " + " | ".join(languages) + " |")
    print("|" + "---|" * (len(languages) + 2))
    for label, level, levels in speech_rows:
        print(f"| {label} | {1000 * level:.1f} | " + " | ".join(f"{1000 * levels[k]:.1f}" for k in languages) + " |")
    names = list(other_rows[0][1])
    print("\nMouth opening on non-speech sound, as a share of the same generator's speech level (target <= 10 %):\n")
    print("| generator | worst | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 2))
    for label, shares in other_rows:
        print(f"| {label} | {max(shares.values()):.0%} | " + " | ".join(f"{shares[k]:.0%}" for k in names) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


def held_out_sync(modes: list[str], data: Path) -> int:
    """Does the gate cost lip sync? Each held-out talking clip's audio through `modes` with the gate on and off; the
    correlation of the motion's own mouth opening (not rendered) with the real speaker's, speaker-weighted per
    group (`motion_quality.speaker_weighted`)."""
    from facecast.dataset import cache as dataset
    from facecast.evaluation.motion_quality import lagged_correlation, speaker_weighted
    from facecast.media import decode_mono

    per_coefficient = read_model(WEIGHTS_PATH)[GAP_GEOMETRY_KEY].numpy()
    records: dict[str, list[dict]] = {}
    for clip in dataset.iter_clips(split="validation", kind="talking"):
        samples = decode_mono(data / str(clip["path"]))
        real = clip["mouth_opening"].astype(float)
        group = "wild" if "/wild/" in str(clip["path"]) else "grid"
        for mode in modes:
            for gate in (False, True):
                name, live = MODES[mode]
                generator = make_generator(name, fps=float(clip["fps"]), streaming=False, frames=len(real),
                                           voice_gate=gate) if not live else None
                if generator is None:
                    continue  # live at the clip's frame rate: the quality benchmark's learned-live row
                opening = mouth_opening(generate_offline(generator, [samples]), per_coefficient)
                r, _ = lagged_correlation(opening, real)
                records.setdefault(f"{group}: {mode}, gate {'on' if gate else 'off'}", []).append(
                    {"speaker": str(clip["speaker"]), "mouth_r": r})
    print("\nMouth r of the motion's own opening against the real speaker's, held-out clips, speaker-weighted:\n")
    print("| group: generator | speakers | clips | mouth r | weakest |")
    print("|---|---|---|---|---|")
    for label, clips in records.items():
        row = speaker_weighted(clips)
        print(f"| {label} | {row['speakers']} | {row['clips']} | {row['mouth_r']:.3f} | "
              f"{row['weakest_r']:.3f} ({row['weakest']}) |")
    return 0


#: A mouth counts as parted at this share of its speaking level (its 90th percentile above its rest), looked for
#: up to LEAD_SEARCH_S before the first word; the rest is the median opening of at least REST_S before that.
PARTED = 0.25
LEAD_SEARCH_S, REST_S = 0.48, 0.16


def lip_lead() -> int:
    """Per talking clip with word timings and at least LEAD_SEARCH_S + REST_S before its first word: how long
    before the word's start the real mouth first reaches PARTED of its speaking level (0 if only at the word)."""
    from facecast.dataset import cache as dataset

    leads: dict[str, list[float]] = {}
    for clip in dataset.iter_clips(kind="talking"):
        if not len(clip["word_start"]) or not np.isfinite(clip["word_start"][0]):
            continue   # no word timings (lrc_ar's words are untimed)
        fps = float(clip["fps"])
        window = round(LEAD_SEARCH_S * fps)
        onset = int(round(float(clip["word_start"][0]) * fps))
        real = clip["mouth_opening"].astype(float)
        if onset < window + round(REST_S * fps) or onset >= len(real):
            continue
        rest = float(np.median(real[:onset - window]))
        parted = np.flatnonzero((real[onset - window:onset + 1] - rest)
                                >= PARTED * max(float(np.percentile(real, 90)) - rest, 1e-9))
        leads.setdefault(str(clip["speaker"]), []).append((window - parted[0]) / fps if len(parted) else 0.0)
    print(f"\nLips parted to {PARTED:.0%} of the speaking level, seconds before the first word (real video):\n")
    print("| speaker | clips | 10th | 25th | median | 75th | 90th |")
    print("|---|---|---|---|---|---|---|")
    for speaker, values in sorted(leads.items()):
        q = np.percentile(values, [10, 25, 50, 75, 90])
        print(f"| {speaker} | {len(values)} | " + " | ".join(f"{x:.2f}" for x in q) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
