"""The `facecast` command: one entry point, one subcommand per job.

Errors the user can fix (bad files, missing faces, unwritable outputs) are
printed as one line on stderr with a non-zero exit code, never a traceback;
`--debug` (or FACECAST_DEBUG=1) shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import codecs
import io
import os
import shlex
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn, Sequence

#: When this command started (near enough: the first facecast module imported), for start-up times.
STARTED = time.perf_counter()

# mediapipe's C++ core logs to stderr on first use; these quiet it where the environment is read late enough
# (child processes); `main` keeps the rest off the terminal (facecast.app.logs).
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from facecast.app.options import (  # noqa: E402
    FRAMING_CHOICES,
    FRAMING_HELP,
    add_live_flags,
    default_config_path,
    default_config_text,
    parse_color,
)
from facecast.errors import FacecastError, InputError, OutputError  # noqa: E402

EXIT_ERROR = 1
EXIT_NOT_FOUND = 1       # `verify`: no watermark
EXIT_BAD_INPUT = 2       # `verify`: unreadable file (argparse usage errors also exit 2)
EXIT_USAGE = 2           # a mistyped command line, as argparse
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def _version() -> str:
    try:
        return version("facecast")
    except PackageNotFoundError:
        return "unknown"


def _add_portrait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--portrait", "-p", type=Path, required=True,
                        help="the picture to animate (JPEG, PNG, WebP, ...)")
    parser.add_argument("--size", type=int, default=512,
                        help="output width and height in pixels, 256-1024, even for an MP4 (default 512)")
    # checked by the command (one line naming the choices), not by argparse's usage dump
    parser.add_argument("--framing", default="auto", metavar="|".join(FRAMING_CHOICES),
                        help=FRAMING_HELP + " (default auto)")
    parser.add_argument("--face-index", type=int, default=None, metavar="N",
                        help="which face to animate when the picture has several: 0 = largest (default), 1 = next, ...")
    parser.add_argument("--landmarks", type=Path, default=None, metavar="POINTS.json",
                        help="hand-placed face points for pictures where no face is detected: a JSON object with "
                             "[x, y] pixel positions for left_eye_outer, left_eye_inner, right_eye_inner, "
                             "right_eye_outer, nose_tip, mouth_left, mouth_right, chin (the subject's left/right)")


def _add_control_options(parser: argparse.ArgumentParser) -> None:
    """--emotion, --mouth-intensity, --head-intensity, --gaze, --distance: layered on any generator's motion
    (`controls.py`)."""
    from facecast.controls import EMOTION_PRESETS

    parser.add_argument("--emotion", default=None, metavar="NAME[:INTENSITY]",
                        help=f"an emotion over the speech: {', '.join(EMOTION_PRESETS)}; intensity 0-1 (default 1)")
    parser.add_argument("--mouth-intensity", type=float, default=None, metavar="M",
                        help="how far the lips move with speech: 0-2 (default 1; below 1 calmer, above 1 livelier)")
    parser.add_argument("--head-intensity", type=float, default=None, metavar="H",
                        help="how far the head moves: 0-2 (default 1; 0 holds it as pictured, below 1 a calmer, "
                             "steadier head, above 1 livelier)")
    parser.add_argument("--gaze", default=None, metavar="YAW,PITCH",
                        help="main gaze direction in degrees (default 0,0 = the camera; yaw > 0 towards image right, "
                             "pitch > 0 up); glances still happen around it")
    parser.add_argument("--distance", type=float, default=None, metavar="D",
                        help="head distance relative to the portrait: 0.5-2 (default 1; 1.5 = half as far again)")


def _add_generator_options(parser: argparse.ArgumentParser) -> None:
    """--generator and --motion-model: which speech -> motion generator (`speech/generator.py`)."""
    from facecast.speech.generator import DEFAULT_GENERATOR, GENERATOR_CHOICES

    parser.add_argument("--generator", default=DEFAULT_GENERATOR, choices=GENERATOR_CHOICES,
                        help=f"speech -> motion: the rule-based generator or the learned diffusion transformer "
                             f"(default {DEFAULT_GENERATOR}; README: Measuring motion)")
    parser.add_argument("--motion-model", type=Path, default=None, metavar="FILE",
                        help="weights for --generator learned, e.g. from `facecast train` (default: the shipped model)")


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, but a mistyped option is one line (what is wrong, where to look), not the whole usage block;
    exit status 2 as argparse's. Subcommands inherit it (`add_subparsers` uses the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"facecast: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="facecast",
        description="One portrait + a voice -> a talking face, on an ordinary computer.",
    )
    parser.add_argument("--version", action="version", version=f"facecast {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks for unexpected errors (and native libraries' own log lines)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    render = commands.add_parser("render", help="render a talking-face video from a portrait and speech",
                                 description="Render a lip-synced talking-face MP4 (or PNG frames) from one portrait "
                                             "and a speech file, or from a motion file.")
    _add_portrait_options(render)
    render.add_argument("--audio", "-a", type=Path, help="speech to lip-sync: any audio file or a video's audio track")
    render.add_argument("--motion", "-m", type=Path,
                        help="render a motion .jsonl (from `facecast motion`) instead of generating it")
    out = render.add_mutually_exclusive_group(required=True)
    out.add_argument("--output", "-o", type=Path,
                     help="the video to write: .mp4, or .webm (VP9) / .mov (ProRes 4444), which keep the alpha")
    out.add_argument("--frames", type=Path, metavar="DIR",
                     help="write numbered PNG frames (alpha kept) into DIR instead")
    render.add_argument("--fps", type=float, default=None, help="frames per second: 25 (default), 30 or 60")
    render.add_argument("--seed", type=int, default=0,
                        help="random seed for blinks, glances and idle motion (default 0)")
    render.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to render (default: CUDA when present)")
    render.add_argument("--background", default="#ffffff", metavar="#RRGGBB",
                        help="colour behind transparent portraits in the MP4 (default white)")
    render.add_argument("--cutout", action="store_true",
                        help="cut the person out of the picture's background: transparent in --frames PNGs, "
                             ".webm and .mov; on --background in an MP4")
    render.add_argument("--badge", nargs="?", const="AI-generated", default=None, metavar="TEXT",
                        help="show a visible disclosure label (default text: AI-generated); "
                             "the invisible watermark is always embedded")
    # defaults and the checks live with the encoder (facecast.media), which `--help` does not import
    render.add_argument("--crf", type=int, default=None, metavar="N",
                        help="H.264 quality, 0-51: lower is better and larger (default 20)")
    render.add_argument("--preset", default=None, metavar="NAME",
                        help="x264 speed preset, ultrafast ... veryslow: slower makes smaller files at the same "
                             "quality (default veryfast)")
    _add_generator_options(render)
    _add_control_options(render)
    render.add_argument("--overwrite", "-y", action="store_true", help="replace the output if it exists")
    render.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    render.set_defaults(handler=_cmd_render)

    motion = commands.add_parser("motion",
                                 help="turn speech into a motion file (JSON Lines) to inspect, edit or render",
                                 description="Generate facecast's motion representation (head pose, gaze, blinks, "
                                             "ARKit expressions, visemes, voice level) from speech.")
    motion.add_argument("--audio", "-a", type=Path, required=True,
                        help="speech: any audio file or a video's audio track")
    motion.add_argument("--output", "-o", type=Path, required=True, help="the .jsonl file to write")
    motion.add_argument("--fps", type=float, default=25.0, help="frames per second: 25 (default), 30 or 60")
    motion.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_generator_options(motion)
    motion.add_argument("--overwrite", "-y", action="store_true", help="replace the output if it exists")
    motion.set_defaults(handler=_cmd_motion)

    analyze = commands.add_parser("analyze", help="check a portrait: find the face, write the framed picture",
                                  description="Detect the face in a portrait and report how it was found; "
                                              "optionally save the framed picture with its landmarks drawn.")
    _add_portrait_options(analyze)
    analyze.add_argument("--output", "-o", type=Path, help="save the framed picture (PNG) with landmarks drawn")
    analyze.add_argument("--overwrite", "-y", action="store_true", help="replace the output if it exists")
    analyze.set_defaults(handler=_cmd_analyze)

    live = commands.add_parser("live", help="microphone -> talking portrait on a virtual webcam, OSC and WebSocket",
                               description="Run the live daemon: the microphone (or --audio FILE in real time) "
                                           "animates the portrait and every enabled output receives it. "
                                           "Stop with Ctrl-C.")
    add_live_flags(live)
    live.set_defaults(handler=_cmd_live)

    devices = commands.add_parser("devices", help="list microphones, cameras and virtual-camera backends")
    devices.add_argument("--json", action="store_true", help="machine-readable output")
    devices.set_defaults(handler=_cmd_devices)

    doctor = commands.add_parser("doctor", help="check what a first run needs, with a one-line fix for each problem",
                                 description="Check Python and the packages, the face models (run on a portrait), "
                                             "the video encoder, microphones, cameras, the virtual camera, the "
                                             "default ports and, with --gpu, CUDA. Exit 0 when every required "
                                             "check passes, 1 otherwise.")
    doctor.add_argument("--portrait", "-p", type=Path, default=None,
                        help="run the face models on this picture (default: the bundled Mona Lisa sample)")
    doctor.add_argument("--gpu", action="store_true", help="also require a CUDA GPU (for --device cuda)")
    doctor.add_argument("--cameras", action="store_true",
                        help="probe cameras on macOS too (opening one there asks for camera permission)")
    doctor.set_defaults(handler=_cmd_doctor)

    verify = commands.add_parser("verify", help="check a video or image for facecast's invisible watermark",
                                 description="Look for the watermark facecast embeds in everything it generates. "
                                             "Exit code 0: found, 1: not found, 2: the file cannot be read.")
    verify.add_argument("file", type=Path, help="a video (MP4, WebM, MKV, ...) or an image (PNG, JPEG, WebP)")
    verify.add_argument("--seconds", type=float, default=20.0, help="how much of a video to read (default 20)")
    verify.add_argument("--json", action="store_true", help="print the result as one JSON object")
    verify.set_defaults(handler=_cmd_verify)

    config = commands.add_parser("config", help="write a commented default settings file for `facecast live`")
    config.add_argument("--init", action="store_true", required=True, help="write the default file")
    config.add_argument("--output", "-o", type=Path, default=None,
                        help="where to write it (default: ~/.config/facecast/facecast.toml)")
    config.add_argument("--overwrite", "-y", action="store_true", help="replace an existing file")
    config.set_defaults(handler=_cmd_config)
    _add_dataset_commands(commands)
    return parser


def _add_dataset_commands(commands: argparse._SubParsersAction) -> None:
    """`extract` (video -> motion) and `dataset build` (shared recordings -> cached training data)."""
    extract = commands.add_parser("extract",
                                  help="recover motion (head, gaze, blinks, expressions) from a talking video",
                                  description="Measure a real talking video with the face mesh and write facecast's "
                                              "motion representation (visemes and voice level from its audio track).")
    extract.add_argument("video", type=Path, help="a video with one face (MP4, MKV, WebM, ...)")
    extract.add_argument("--output", "-o", type=Path, required=True, help="the .jsonl motion file to write")
    extract.add_argument("--reference", default="neutral", metavar="neutral|N",
                         help="the frame motion is relative to, as a portrait would be: 'neutral' (default: eyes open, "
                              "mouth closed) or a frame number (0 = the first frame)")
    extract.add_argument("--overwrite", "-y", action="store_true", help="replace the output if it exists")
    extract.set_defaults(handler=_cmd_extract)

    dataset = commands.add_parser("dataset", help="build the speaker-split motion dataset from recorded clips")
    actions = dataset.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="extract motion and audio features of every clip into the cache "
                                             "(incremental: clips already cached are skipped)")
    build.add_argument("--data", type=Path, default=None, help="the recordings folder (default: ../shared/data)")
    build.add_argument("--cache", type=Path, default=None, help="where to cache (default: ~/.cache/facecast/dataset)")
    build.add_argument("--only", default=None, metavar="GLOB", help="only clips whose relative path matches, "
                                                                    "e.g. 'talking/grid_s4/*'")
    build.add_argument("--quiet", "-q", action="store_true", help="no per-clip lines")
    build.set_defaults(handler=_cmd_dataset_build)

    train = commands.add_parser("train", help="fine-tune the learned motion model on your own talking videos",
                                description="Extract a folder of talking videos of one person (cached, so a second "
                                            "run only extracts new videos) and continue training the shipped "
                                            "learned motion model on them. Use the result with `--generator "
                                            "learned --motion-model FILE` on render and live.")
    train.add_argument("--data", type=Path, required=True, metavar="DIR",
                       help="a folder of talking videos (MP4, MOV, MKV, WebM, AVI), each with one face and a voice")
    train.add_argument("--output", "-o", type=Path, default=None,
                       help="the weights to write (default: ~/.local/share/facecast/motion_model.pt)")
    train.add_argument("--minutes", type=float, default=10.0,
                       help="training time of the motion model after extraction (default 10); its ten mouth-gap "
                            "nets (eight offline, two live) add a few minutes on 2 cores")
    train.add_argument("--steps", type=int, default=None, help="or stop after this many steps")
    train.add_argument("--resume", action="store_true",
                       help="carry on from an interrupted run's checkpoint (saved every 5 minutes and when "
                            "stopped: Ctrl-C or a stop signal)")
    train.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    train.add_argument("--cache", type=Path, default=None, help="where to cache the extracted videos")
    train.set_defaults(handler=_cmd_train)


def _cmd_render(args: argparse.Namespace) -> int:
    from facecast.app.render import RenderRequest, render
    from facecast.controls import controls_from

    report = render(RenderRequest(
        portrait=args.portrait, output=args.output, frames_dir=args.frames, audio=args.audio, motion=args.motion,
        size=args.size, fps=args.fps, seed=args.seed, face_index=args.face_index, landmarks=args.landmarks,
        framing=args.framing, overwrite=args.overwrite, device=args.device, background=parse_color(args.background),
        progress=not args.quiet and sys.stderr.isatty(), badge=args.badge,
        controls=controls_from(args.emotion, args.gaze, args.distance, args.mouth_intensity,
                               args.head_intensity),
        generator=args.generator, motion_model=args.motion_model, cutout=args.cutout,
        **{name: value for name in ("crf", "preset") if (value := getattr(args, name)) is not None},
    ))
    if not args.quiet:
        # both times from the command's start (the render alone, without start-up, took report.seconds): a first
        # frame "after start" later than the whole render read as a contradiction
        total = time.perf_counter() - STARTED
        speed = report.duration / total if total > 0 else float("inf")
        first = "" if report.first_frame_at is None else \
            f", first frame encoded {report.first_frame_at - STARTED:.1f} s after start"
        print(f"wrote {report.output}: {report.frames} frames, {report.duration:.2f} s of video "
              f"in {total:.1f} s ({speed:.1f}x real time{first}); watermark run id {report.run_id}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import math

    from facecast.provenance.verify import verify

    if not (math.isfinite(args.seconds) and args.seconds > 0):
        print(f"facecast: error: --seconds must be a positive number (got {args.seconds:g})", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = verify(args.file, max_seconds=args.seconds)
    except InputError as exc:
        print(f"facecast: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report.as_json() if args.json else report.line())
    return 0 if report.detection.detected else EXIT_NOT_FOUND


def _cmd_motion(args: argparse.Namespace) -> int:
    from facecast.app.render import generate_motion_file

    path, count = generate_motion_file(args.audio, args.output, fps=args.fps, seed=args.seed, overwrite=args.overwrite,
                                       generator=args.generator, motion_model=args.motion_model)
    print(f"wrote {path}: {count} frames at {args.fps:g} fps")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from facecast.face.portrait import analyze_portrait
    from facecast.face_model import shut_mouth

    if args.output is not None and args.output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise InputError(f"the framed picture is written as .png, .jpg or .webp (got {args.output.name})")
    rig = analyze_portrait(args.portrait, size=args.size, face_index=args.face_index, landmarks_json=args.landmarks,
                           framing=args.framing)
    height, width = rig.frame_shape
    print(f"{args.portrait}: {rig.face_count} face(s) found; using one via {rig.method}; "
          f"framed '{rig.framing}' to {width}x{height}{' with alpha' if rig.has_alpha else ''}")
    shut = shut_mouth(rig.landmarks)
    if shut is not None:
        print(f"its lips are parted ({shut.parted:.2f} of the face's height apart): they are shut before animating, "
              "since motion opens the mouth from shut lips")
    if args.output is not None:
        import cv2

        from facecast.media import AtomicOutput

        with AtomicOutput(args.output, args.overwrite, inputs=(args.portrait,)) as sink:
            canvas = (rig.image if rig.backdrop is None else rig.backdrop)[:, :, :3].copy()
            for x, y in rig.landmarks[:, :2] + rig.placement:
                cv2.circle(canvas, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1, lineType=cv2.LINE_AA)
            if not cv2.imwrite(str(sink.temp), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
                raise InputError(f"cannot write {args.output}: use a .png or .jpg file name")
            sink.commit()
        print(f"wrote {args.output}")
    return 0


def _cmd_live(args: argparse.Namespace) -> int:
    from facecast.app.stop_signals import StopRequested, stop_while_starting

    # a stop (the OBS panel's Stop, `kill`) before the daemon runs unwinds the start-up like Ctrl-C
    restore_signals = stop_while_starting()
    try:
        from facecast.app.live import run_live  # loads mediapipe, the renderer and the bridges: only `live` pays

        flags = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "debug")}
        return run_live(flags)
    except StopRequested:
        print("facecast: stopped", file=sys.stderr)
        return 0
    finally:
        restore_signals()


def _cmd_devices(args: argparse.Namespace) -> int:
    import json

    from facecast.app.audio_input import list_input_devices
    from facecast.app.camera_input import list_cameras
    from facecast.bridges.vcam import list_vcam_backends

    listing = {"audio_inputs": list_input_devices(), "cameras": list_cameras(),
               "virtual_cameras": list_vcam_backends()}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    print("Audio inputs:" if listing["audio_inputs"] else "Audio inputs: none found")
    for device in listing["audio_inputs"]:
        mark = "*" if device.get("is_default") else " "
        print(f" {mark} [{device['index']}] {device['name']} ({device['channels']} ch, "
              f"{device['default_sample_rate']:g} Hz, {device['host_api']})")
    print("Cameras (--camera INDEX or NAME):" if listing["cameras"] else "Cameras: none found")
    for camera in listing["cameras"]:
        modes = ", ".join(camera.get("modes") or []) or "busy or unavailable"
        print(f"   [{camera['index']}] {camera['name']} ({modes})")
    print("Virtual cameras:" if listing["virtual_cameras"] else "Virtual cameras: none found")
    for backend in listing["virtual_cameras"]:
        print("   " + ", ".join(f"{k}={v}" for k, v in backend.items()))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from facecast.app.doctor import doctor

    return doctor(portrait=args.portrait, gpu=args.gpu, cameras=args.cameras)


def _cmd_extract(args: argparse.Namespace) -> int:
    from facecast.app.extract import extract_motion_file

    reference = args.reference if args.reference == "neutral" else _frame_number(args.reference)
    path, result = extract_motion_file(args.video, args.output, reference=reference, overwrite=args.overwrite)
    print(f"wrote {path}: {len(result.found)} frames at {result.fps:g} fps, relative to frame {result.reference}; "
          f"face lost in {result.lost} frame(s) (filled from their neighbours)")
    return 0


def _frame_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--reference must be 'neutral' or a frame number, got '{text}'") from None


def _make_parent_folder(target: Path) -> None:
    """The folder an output goes into, made if missing; one line when the system refuses (a parent that is a
    file, no permission)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: cannot make folder {target.parent}: {exc.strerror or exc}") from None


def _check_cache_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--cache {folder} is a file, not a folder")


def _cmd_dataset_build(args: argparse.Namespace) -> int:
    # the dataset is an offline package the runtime never loads: imported only when `dataset build` runs
    from facecast.dataset.cache import DEFAULT_DATA, build, default_cache_dir, load_index, summary

    cache = args.cache or default_cache_dir()
    _check_cache_folder(cache)
    report = build(args.data or DEFAULT_DATA, cache, only=args.only, progress=None if args.quiet else print)
    failed = report.failed or []
    if args.quiet:  # (otherwise each skip was a progress line already)
        for rel, reason in failed:
            print(f"skipped {rel}: {reason}", file=sys.stderr)
    print(f"{cache}: {report.clips} clips ({report.extracted} extracted, {report.skipped} already cached, "
          f"{len(failed)} skipped), {report.frames} new frames ({report.lost} with the face lost) "
          f"in {report.seconds:.0f} s; cache {report.bytes / 1e6:.1f} MB")
    if report.clips and len(failed) == report.clips:
        raise InputError(f"every clip was skipped ({failed[0][0]}: {failed[0][1]})")
    print("\n".join(summary(load_index(cache))))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    # training is an offline package the runtime never loads: imported only when `train` runs
    import math

    from facecast.app.stop_signals import StopRequested, stop_while_starting
    from facecast.media import AtomicOutput
    from facecast.training.motion_diffusion import checkpoint_path, default_own_model_path, fine_tune

    started = time.monotonic()
    out = args.output or default_own_model_path()
    # checked before the videos are read (extraction alone can take minutes)
    if not (math.isfinite(args.minutes) and args.minutes > 0):
        raise InputError(f"--minutes must be a positive number (got {args.minutes:g})")
    if args.steps is not None and args.steps <= 0:
        raise InputError(f"--steps must be positive (got {args.steps})")
    if out.is_dir():
        raise InputError(f"{out} is a folder: give the model file to write (e.g. {out / 'my_motion.pt'})")
    if args.cache is not None:
        _check_cache_folder(args.cache)
    _make_parent_folder(out)
    checkpoint = checkpoint_path(out)
    # a stop signal (`kill`, a closed terminal) stops like Ctrl-C: the training state is saved to resume from
    restore_signals = stop_while_starting()
    try:
        # the model appears at `out` only once complete: an interrupted run leaves the file that was there
        with AtomicOutput(out, args.overwrite or args.resume, inputs=[args.data]) as sink:
            result = fine_tune(args.data, sink.temp, minutes=args.minutes, steps=args.steps, resume=args.resume,
                               cache=args.cache, checkpoint=checkpoint)
            sink.commit()
    except StopRequested:
        print("facecast: stopped" + (f" (resume with --resume: {checkpoint})" if checkpoint.exists() else ""),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        restore_signals()
    checkpoint.unlink(missing_ok=True)
    print(f"wrote {out} after {result['steps']} steps of the motion model ({result['minutes']:.1f} min, loss "
          f"{result['loss']:.3f}) and its mouth-gap nets, {(time.monotonic() - started) / 60:.1f} min in all; use "
          f"it: facecast render --generator learned --motion-model {shlex.quote(str(out))} ...")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from facecast.media import AtomicOutput

    target = args.output or default_config_path()
    _make_parent_folder(target)
    with AtomicOutput(target, args.overwrite) as sink:
        sink.temp.write_text(default_config_text(), encoding="utf-8")
        sink.commit()
    print(f"wrote {target}; use it: facecast live --config {shlex.quote(str(target))}")
    return 0


def configure_console(streams: Sequence[object] | None = None) -> None:
    """Never fail on a character the console cannot show (a portrait named in Cyrillic on a Windows console).

    A terminal keeps its encoding and shows '?' for what it cannot encode; output sent to a pipe or a file (the
    OBS script's log, `facecast devices > list.txt`) is UTF-8 on every OS, which on Windows would otherwise be
    the ANSI code page (cp1252), where an unencodable character is a UnicodeEncodeError.
    """
    for stream in streams if streams is not None else (sys.stdout, sys.stderr):
        if type(stream) is not io.TextIOWrapper:  # replaced (pytest, IDEs): leave it alone
            continue
        try:
            if stream.isatty():
                stream.reconfigure(errors="replace")
            elif codecs.lookup(stream.encoding).name != "utf-8" or stream.errors == "strict":
                stream.reconfigure(encoding="utf-8", errors="replace")
        except (OSError, ValueError, LookupError):  # closed or unusual streams: keep them as they are
            continue


def main(argv: Sequence[str] | None = None) -> int:
    configure_console()
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("FACECAST_DEBUG") == "1"
    if args.command is None:
        parser.print_help()
        return 0
    if argv is None and not debug:  # this process is facecast: keep native libraries' log lines off stderr, once
        from facecast.app.logs import keep_native_logs_off_stderr

        keep_native_logs_off_stderr()
    try:
        return args.handler(args)
    except FacecastError as exc:
        print(f"facecast: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("facecast: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line by default, the traceback with --debug
        if debug:
            raise
        print(f"facecast: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
