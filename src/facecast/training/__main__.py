"""`python -m facecast.training`: the maintainers' training commands, one subcommand per model.

    python -m facecast.training motion-diffusion train --steps 6000 --minutes 120   # then mouth-gap nets, calibration
    python -m facecast.training motion-diffusion calibrate [MODEL]
    python -m facecast.training mouth-gap train [--model MODEL]
    python -m facecast.training mouth-gap store-geometry [--model MODEL]
    python -m facecast.training sync-scorer train --minutes 10                     # then validates
    python -m facecast.training sync-scorer validate
    python -m facecast.training mean-face build
    python -m facecast.training face-models build --from mediapipe-0.10.21-….whl

Most need the dataset cache (`facecast dataset build`). Users fine-tune with
`facecast train --data DIR` instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from facecast.dataset.cache import iter_clips
from facecast.errors import FacecastError
from facecast.evaluation.sync_scorer import WEIGHTS_PATH as SCORER_WEIGHTS
from facecast.evaluation.sync_scorer import SyncScorer, scorable, validate
from facecast.speech.learned import FEATURE_DIMS
from facecast.speech.learned import WEIGHTS_PATH as MOTION_WEIGHTS
from facecast.training import face_models, mean_face, motion_diffusion, mouth_gap, sync_scorer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m facecast.training", description=__doc__.split("\n")[0])
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)

    diffusion = models.add_parser("motion-diffusion", help="the learned motion model (speech/learned.py)",
                                  description=motion_diffusion.__doc__.split("\n\n")[0])
    actions = diffusion.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("train", help="train on the cached training split; then the mouth-gap nets and calibration")
    t.add_argument("--minutes", type=float, default=20.0, help="training-time budget (default 20)")
    t.add_argument("--steps", type=int, default=None, help="stop after this many steps (a budget that does not "
                   "depend on the machine's speed)")
    t.add_argument("--resume", action="store_true", help="carry on from the checkpoint beside --output")
    t.add_argument("--truncated", type=float, default=0.3, help="share of training windows cut short, as live "
                   "streaming's chunks are (default 0.3)")
    t.add_argument("--no-calibrate", action="store_true", help="skip choosing the guidance scales afterwards")
    t.add_argument("--no-mouth", action="store_true", help="skip training the mouth-gap nets afterwards (log-mel)")
    t.add_argument("--init-from", type=Path, default=None, help="start from this model's weights (fine-tuning)")
    t.add_argument("--learning-rate", type=float, default=5e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cache", type=Path, default=None)
    t.add_argument("-o", "--output", type=Path, default=MOTION_WEIGHTS)
    t.add_argument("--features", choices=tuple(FEATURE_DIMS), default="logmel", help="per-hop audio features")
    t.add_argument("--data", type=Path, default=None, help="the recordings (for log-mel; default ../shared/data)")
    t.set_defaults(handler=_motion_diffusion_train)
    c = actions.add_parser("calibrate", help="choose the guidance scales on training clips; stored in the model file")
    c.add_argument("model", type=Path, nargs="?", default=MOTION_WEIGHTS)
    c.add_argument("--cache", type=Path, default=None)
    c.set_defaults(handler=_motion_diffusion_calibrate)

    gap = models.add_parser("mouth-gap", help="the mouth-gap nets inside a motion model file (speech/mouth_gap.py)",
                            description=mouth_gap.__doc__.split("\n\n")[0])
    actions = gap.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("train", help="train the mouth-gap nets into a motion model file")
    t.add_argument("--model", type=Path, default=MOTION_WEIGHTS, help="the motion model file (default: shipped)")
    t.add_argument("--steps", type=int, default=None,
                   help="steps per net (default: each recipe's, 600 for the offline nets and 2000 for the live)")
    t.add_argument("--exclude-fold", type=int, default=None, metavar="I",
                   help="leave out speaker fold I (src/facecast/dataset/folds.json), to score the nets on it")
    t.set_defaults(handler=_mouth_gap_train)
    g = actions.add_parser("store-geometry", help="store the nets' lip geometry in a model file made before it was "
                                                  "kept there (no training)")
    g.add_argument("--model", type=Path, default=MOTION_WEIGHTS, help="the motion model file (default: shipped)")
    g.set_defaults(handler=_mouth_gap_store_geometry)

    scorer = models.add_parser("sync-scorer", help="the lip-sync scorer (evaluation/sync_scorer.py)",
                               description=sync_scorer.__doc__.split("\n\n")[0])
    actions = scorer.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("train", help="train on the cached training split, then validate")
    t.add_argument("--minutes", type=float, default=10.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cache", type=Path, default=None)
    t.add_argument("-o", "--output", type=Path, default=SCORER_WEIGHTS)
    t.set_defaults(handler=_sync_scorer_train)
    v = actions.add_parser("validate", help="validate on the held-out speakers")
    v.add_argument("--cache", type=Path, default=None)
    v.add_argument("--weights", type=Path, default=SCORER_WEIGHTS)
    v.set_defaults(handler=_sync_scorer_validate)

    face = models.add_parser("mean-face", help="the mean face of hand-placed landmarks (face/data/mean_face.npy)",
                             description=mean_face.__doc__.split("\n")[0])
    actions = face.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="average the face mesh over GRID frames")
    b.add_argument("--output", type=Path, default=mean_face.OUTPUT)
    b.set_defaults(handler=_mean_face_build)

    models_parser = models.add_parser("face-models", help="the face tracker's model files (face/models/)",
                                      description=face_models.__doc__.split("\n")[0])
    actions = models_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="patch and bundle the mediapipe 0.10.21 face models")
    b.add_argument("--from", dest="source", type=Path, required=True,
                   help="a mediapipe 0.10.21 wheel (.whl) or its installed mediapipe folder")
    b.add_argument("--output", type=Path, default=face_models.OUTPUT)
    b.add_argument("--force", action="store_true", help="write files whose SHA-256 differs from the shipped ones")
    b.set_defaults(handler=_face_models_build)
    return parser


def _motion_diffusion_train(args: argparse.Namespace) -> None:
    result = motion_diffusion.train(minutes=args.minutes, steps=args.steps, resume=args.resume, seed=args.seed,
                                    out=args.output, cache=args.cache, features=args.features, data_dir=args.data,
                                    truncated=args.truncated, init_from=args.init_from,
                                    learning_rate=args.learning_rate)
    print(f"wrote {args.output} after {result['steps']} steps (loss {result['loss']:.4f})")
    if args.features == "logmel" and not args.no_mouth:
        mouth_gap.add_to_model(args.output, cache=args.cache, data_dir=args.data)
    if not args.no_calibrate:
        motion_diffusion.calibrate(args.output, args.cache, data_dir=args.data)


def _motion_diffusion_calibrate(args: argparse.Namespace) -> None:
    motion_diffusion.calibrate(args.model, args.cache)


def _mouth_gap_train(args: argparse.Namespace) -> None:
    mouth_gap.add_to_model(args.model, steps=args.steps, exclude_fold=args.exclude_fold)


def _mouth_gap_store_geometry(args: argparse.Namespace) -> None:
    mouth_gap.store_geometry(args.model)
    print(f"stored the mouth-gap nets' lip geometry in {args.model}")


def _sync_scorer_train(args: argparse.Namespace) -> None:
    result = sync_scorer.train(cache=args.cache, minutes=args.minutes, seed=args.seed, out=args.output)
    print(f"wrote {args.output} after {result['steps']} steps (loss {result['loss']:.3f})")
    _validate_scorer(args.output, args.cache)


def _sync_scorer_validate(args: argparse.Namespace) -> None:
    _validate_scorer(args.weights, args.cache)


def _validate_scorer(weights: Path, cache: Path | None) -> None:
    held_out = [c for c in iter_clips(split="validation", kind="talking", cache=cache) if scorable(c)]
    for line in validate(SyncScorer(weights), held_out).lines():
        print(line)


def _mean_face_build(args: argparse.Namespace) -> None:
    face = mean_face.build()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output, face)
    print(f"wrote {args.output} {face.shape}")


def _face_models_build(args: argparse.Namespace) -> None:
    for name, digest in face_models.build(args.source, args.output, force=args.force).items():
        print(f"wrote {args.output / name}  sha256 {digest}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except FacecastError as error:   # a missing dataset or model file: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
