"""The learned motion model, streamed: live audio in, motion frames out with a bounded lookahead.

Why: offline, the diffusion model denoises whole 1 s windows, so a frame can
wait for up to a second of future audio. Live, that would be a second of lag.
Here the model commits CHUNK_FRAMES frames (25 fps) at a time, as soon as the
audio up to LOOKAHEAD_FRAMES after them has arrived. It denoises only those
frames plus the lookahead ones, continuing from the last CONTEXT frames it
committed. In training, windows that end early (at the end of a clip) are
masked the same way. The lookahead frames are thrown away and generated again
with the next chunk.

The log-mel levels are taken relative to the speaker's loud level. Offline,
that is the whole clip's 95th percentile. Live, it is the 95th percentile of the
last LEVEL_HISTORY_S seconds. Both are never below `learned.QUIET_LOUD_DB`,
so silence is not mistaken for speech.

With `sync` latency the mouth is instead set by the offline mouth-gap nets,
which hear 0.56 s ahead and Whisper's encoder states, as `facecast render`'s:
every SYNC_UPDATE_FRAMES frames Whisper encodes the last SYNC_WINDOW_S seconds
on their own (`whisper_states.WhisperStates.recent_rows`) and the frames whose
lookahead has been heard get their jaw. The avatar then trails the voice by
about 1.7 s, which a stream makes up by delaying the voice as much (OBS: the
microphone's Sync Offset); everything else is the low-latency stream's.

Visemes and the voice level (what VRM "A I U E O" avatars and VTube Studio
read) come from the voice analysis (`voice`), as the training data's did. The
interface is every generator's (`generator.MotionGenerator`: `push` blocks of
16 kHz mono with their capture time, `finish` at the end). Frames come out at
any fps, interpolated from the model's 25 fps.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np

from facecast.errors import FacecastError
from facecast.motion import MotionFrame, scale_mouth
from facecast.speech.audio_features import MEL_BANDS, SAMPLE_RATE, CaptureClock, HopFramer, log_mel
from facecast.speech.learned import (
    CONTEXT,
    FPS,
    HEAD_GUIDED,
    HEAD_RECENTRE_S,
    HOPS_PER_FRAME,
    OFFLINE_GATE_LEAD_S,
    WEIGHTS_PATH,
    WINDOW,
    BlinkShaper,
    load,
    loud_level,
    motion_frames,
    relative_logmel,
)
from facecast.speech.mouth_gap import RECEPTIVE_FIELD
from facecast.speech.voice import VoiceAnalyser, VoiceFrame

# The measurements behind these four: model card (`data/motion_diffusion.md`, "Why these constants").
#: Frames (25 fps) committed per model call: 40 ms; shorter chunks follow the mouth better and sooner.
CHUNK_FRAMES = 1
#: Frames of audio after a chunk that the model hears before committing it: 80 ms, as the rule generator.
LOOKAHEAD_FRAMES = 2
#: Time constant (s) of the causal smoothing of the head's rotation and position in the output: each chunk is
#: sampled afresh, so the head would shake from chunk to chunk. The mouth is left alone (it must not lag).
HEAD_SMOOTHING_S = 0.2
#: How much wider than they ask the low-latency mouth-gap nets open the lips: hearing 80 ms ahead and log-mel
#: alone, they hedge towards a half-open mouth, about 0.8 as wide as the offline nets' on the speaker folds'
#: unseen speakers (model card: "Fourteenth round"), so the live mouth looked small.
LIVE_MOUTH_GAIN = 1.25
#: Denoising steps per chunk (offline: 8): live, fewer steps followed the mouth better, at a quarter of the compute.
LIVE_SAMPLE_STEPS = 2
#: Denoising steps per chunk while the live daemon is short of CPU (`lighten`): half the model's compute.
LIGHT_SAMPLE_STEPS = 1
SAMPLES_PER_FRAME = int(SAMPLE_RATE / FPS)
#: The loud level is the 95th percentile of this many seconds of recent hops (`loud_level`).
LEVEL_HISTORY_S = 30.0
#: The relative level of silence (relative_logmel's floor).
SILENT = -4.0
#: `latency` choices: "low" (the mouth-gap nets that hear 80 ms ahead) or "sync" (the offline nets, with Whisper).
LATENCIES = ("low", "sync")
#: Sync latency: frames whose mouth is set together (one Whisper encoding: 0.8 s of them, so it costs about 0.07
#: of a core), and the seconds of audio that encoding hears (model card, "Thirteenth round").
SYNC_UPDATE_FRAMES = 20
SYNC_WINDOW_S = 3.0


class LearnedMotionGenerator:
    """Streaming speech -> MotionFrames from the learned model (`generator.MotionGenerator`)."""

    SAMPLE_RATE = SAMPLE_RATE

    def __init__(self, fps: float = 25.0, seed: int = 0, path: Path = WEIGHTS_PATH,
                 chunk: int = CHUNK_FRAMES, lookahead: int = LOOKAHEAD_FRAMES,
                 head_smoothing_s: float = HEAD_SMOOTHING_S, voice_gate: bool = True, latency: str = "low") -> None:
        """`voice_gate`: shut the mouth on sound that is not a voice (`voice_gate`). `latency`: LATENCIES (see
        the module docstring)."""
        torch = _torch()
        if not (fps > 0 and np.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        if chunk < 1 or lookahead < 0 or chunk + lookahead > WINDOW:
            raise ValueError(f"need chunk >= 1, lookahead >= 0 and chunk + lookahead <= {WINDOW}")
        if latency not in LATENCIES:
            raise ValueError(f"latency must be one of {', '.join(LATENCIES)}, got {latency!r}")
        self.model = load(path)
        if self.model.features != "logmel":
            raise FacecastError(f"{path}: live streaming needs a log-mel model, this one uses {self.model.features}")
        self.fps = float(fps)
        self.chunk, self.lookahead = chunk, lookahead
        #: How far past a chunk's last frame the audio is read before the chunk is committed.
        self.lookahead_s = lookahead / FPS
        #: How much later than an even schedule an output frame can become final, over the first frame's delay:
        #: each is interpolated between the two committed 25 fps frames around its time, so at 30 or 60 fps it
        #: waits for the later one, up to a 25 fps frame (36.7 ms at 60 fps, 33.3 ms at 30). The live daemon
        #: schedules frames this much later, so every tick shows its own pose instead of repeating one.
        self.pose_wait_s = pose_wait(self.fps, chunk)
        #: Share of the way the output head moves towards each new frame's (exponential smoothing at 25 fps).
        self._head_step = 1.0 - float(np.exp(-1.0 / (FPS * head_smoothing_s))) if head_smoothing_s > 0 else 1.0
        self._head: np.ndarray | None = None
        #: The head's slow drift (causal average over HEAD_RECENTRE_S), taken out so it faces the camera.
        self._centre = np.zeros(HEAD_GUIDED.stop - HEAD_GUIDED.start, np.float32)
        self._centre_step = 1.0 - float(np.exp(-1.0 / (FPS * HEAD_RECENTRE_S)))
        #: The mouth-gap net with the longest lookahead the stream hears (`mouth_gap`), if the model has one.
        #: (Nets that hear Whisper's states need its encoding of the audio after a frame too: sync latency only.)
        streamable = {look: net for look, net in self.model.mouth.items() if not net.hears_whisper}
        heard_ahead = [look for look in streamable if look <= lookahead] or sorted(streamable)[:1]
        self._mouth = streamable[max(heard_ahead)] if heard_ahead else None
        #: Sync latency: the nets that hear Whisper set the mouth, SYNC_UPDATE_FRAMES frames at a time, once the
        #: audio their lookahead needs has come (`_set_mouths`); `_mouthed` frames have theirs.
        self._sync = latency == "sync"
        self._mouthed = 0
        if self._sync:
            whisper = [net for net in self.model.mouth.values() if net.hears_whisper]
            if not whisper:
                raise FacecastError(f"{path}: sync latency needs mouth-gap nets that hear Whisper's states; "
                                    "this model has none (use --latency low)")
            from facecast.speech.whisper_states import shared

            self._mouth = whisper[0]
            self._whisper = shared(self._mouth.encoders)
            # the samples from `_recent_start` on: what the next encodings hear (SYNC_WINDOW_S before a batch);
            # blocks wait in `_arrived` and join them only when a batch is encoded (not on every 10 ms block)
            self._recent, self._recent_start = np.zeros(0, np.float32), 0
            self._arrived: list[np.ndarray] = []
            self.lookahead_s = (self._mouth.ahead + SYNC_UPDATE_FRAMES) / FPS
        #: Seconds of frames released at once: a sync-latency batch, else a chunk (the live daemon's queue holds it).
        self.burst_s = (SYNC_UPDATE_FRAMES if self._sync else chunk) / FPS
        #: Frames of audio kept before the next commit: the model's context and the mouth net's history.
        self._history = max(CONTEXT, self._mouth.history if self._mouth is not None else 0)
        self._blinks = BlinkShaper()
        self._sampling = replace(self.model.sampling_for(seed), steps=LIVE_SAMPLE_STEPS)
        self._random = torch.Generator().manual_seed(seed)
        self._framer = HopFramer()
        self._hops: list[np.ndarray] = []               # log-mel hops not yet making up a whole frame
        self._levels: deque[float] = deque(maxlen=int(LEVEL_HISTORY_S * 100))
        self._audio: dict[int, np.ndarray] = {}         # 25 fps frame -> its audio row (context and ahead only)
        self._framed = 0                                # frames with audio rows so far
        self._clock = CaptureClock()
        self._context = torch.zeros(0, len(self.model.mean))   # the last committed frames, normalised
        self._rows: dict[int, tuple[np.ndarray, float | None]] = {}   # committed frame -> (motion row, capture)
        self._committed = 0
        self._emitted = 0
        self._finished = False
        # Visemes and voice level (for VRM "A I U E O" avatars and VTube Studio) come from the voice analysis,
        # as the training data's did (`voice.voice_track`).
        self._voice = VoiceAnalyser(self.fps)
        self._gate = voice_gate
        #: Output frames after a frame whose voice opens its gate: sync latency, as offline (OFFLINE_GATE_LEAD_S).
        self._gate_lead = round(OFFLINE_GATE_LEAD_S * self.fps) if latency == "sync" else 0
        self._voiced: dict[int, VoiceFrame] = {}
        self._last_voiced: VoiceFrame | None = None
        #: Compute time of one chunk, measured now (which also warms the model up): the live daemon
        #: schedules frames this much after their audio.
        self.processing_s = self._time_a_chunk()

    def _time_a_chunk(self, repeats: int = 7) -> float:
        """Twice the median of a few chunk computations on silence (after one to warm up), plus 5 ms. The
        median, not the slowest: the daemon keeps this delay for the whole session, so one slow chunk measured
        beside other start-up work would make every frame later (model card, "Live"); an odd slow chunk later
        only repeats a frame."""
        torch = _torch()
        span = self.chunk + self.lookahead
        context = torch.zeros(CONTEXT, len(self.model.mean))
        audio = torch.full((CONTEXT + span, HOPS_PER_FRAME * MEL_BANDS), SILENT)
        timings = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            self.model.denoise(context, audio, self._sampling, torch.Generator().manual_seed(0))
            if self._mouth is not None and not self._sync:
                silence = np.full((RECEPTIVE_FIELD + span, audio.shape[1]), SILENT, np.float32)
                self._mouth.predict(silence, self.lookahead)
            timings.append(time.perf_counter() - started)
        if not self._sync:
            return 2.0 * float(np.median(timings[1:])) + 0.005
        # Sync latency: a chunk, then (with the last chunk of a batch) the batch's Whisper encoding and nets.
        mouths = []
        for _ in range(3):
            started = time.perf_counter()
            states = self._whisper.recent_rows(np.zeros(int(SYNC_WINDOW_S * SAMPLE_RATE), np.float32))
            rows = self._mouth.history + SYNC_UPDATE_FRAMES + self._mouth.ahead
            heard = np.full((rows, audio.shape[1]), SILENT, np.float32)
            self._mouth.target(self._mouth.inputs(heard, states[-rows:]), self._mouth.ahead)
            mouths.append(time.perf_counter() - started)
        return 2.0 * (float(np.median(timings[1:])) + float(np.median(mouths))) + 0.005

    def lighten(self, light: bool) -> None:
        """Fewer denoising steps (LIGHT_SAMPLE_STEPS) while the machine is short of CPU, the live daemon's last
        resort before frames come late: the motion follows the voice a little less closely, but in time. Safe
        from another thread: each chunk reads the sampling settings once."""
        self._sampling = replace(self._sampling, steps=LIGHT_SAMPLE_STEPS if light else LIVE_SAMPLE_STEPS)

    @property
    def light(self) -> bool:
        return self._sampling.steps == LIGHT_SAMPLE_STEPS

    def push(self, samples: np.ndarray, capture_time: float | None = None) -> list[MotionFrame]:
        """Feed the next block of 16 kHz mono samples; return the frames that became final."""
        if self._finished:
            raise RuntimeError("push() after finish(): create a new generator for a new stream")
        block = np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
        if block.ndim != 1:
            raise ValueError(f"expected mono samples (a 1-D array), got shape {block.shape}")
        self._clock.add(len(block), capture_time)
        self._keep_voice(self._voice.push(block))
        if self._sync:
            self._arrived.append(block.astype(np.float32))
        for windows in self._framer.push(block):
            self._add_hops(log_mel(windows))
        while self._committed + self.chunk + self.lookahead <= self._framed:
            self._commit(self.chunk, self.chunk + self.lookahead)
        if self._sync:
            self._set_mouths()
            return self._emit(self._mouthed - 1)
        return self._emit(self._committed - 1)

    def finish(self) -> list[MotionFrame]:
        """End of input: commit the frames the audio covers (no lookahead left) and return the rest."""
        if self._finished:
            return []
        self._finished = True
        self._keep_voice(self._voice.finish())
        total = max(1, round(self._clock.samples / SAMPLE_RATE * FPS))
        while self._framed < total:                     # a partial last frame counts as silence
            self._audio[self._framed] = np.full(HOPS_PER_FRAME * MEL_BANDS, SILENT, np.float32)
            self._framed += 1
        while self._committed < total:
            self._commit(min(self.chunk, total - self._committed), min(self.chunk + self.lookahead,
                                                                       total - self._committed))
        if self._sync:
            self._set_mouths()
            self._set_mouths(final=True)
        return self._emit(self._committed - 1, until=max(1, round(self._clock.samples / SAMPLE_RATE * self.fps)))

    def _keep_voice(self, frames: list[VoiceFrame]) -> None:
        for frame in frames:
            self._voiced[frame.index] = frame

    def _add_hops(self, hops: np.ndarray) -> None:
        """New log-mel hops -> the audio rows of the frames they complete, each relative to the loud level of
        the hops up to its own end (so block sizes never change the result)."""
        self._hops.extend(hops)
        while len(self._hops) >= HOPS_PER_FRAME:
            frame = np.stack(self._hops[:HOPS_PER_FRAME])
            del self._hops[:HOPS_PER_FRAME]
            self._levels.extend(frame.mean(1).tolist())
            loud = loud_level(np.fromiter(self._levels, float, len(self._levels)))
            self._audio[self._framed] = relative_logmel(frame, loud).reshape(-1)
            self._framed += 1

    def _commit(self, count: int, span: int) -> None:
        """Denoise `span` frames after the context; keep the first `count`. Their capture time is the newest
        sample the model heard for them (the end of the span)."""
        torch = _torch()
        start, have = self._committed, len(self._context)
        audio = torch.from_numpy(np.stack([self._audio[i] for i in range(start - have, start + span)]))
        new = self.model.denoise(self._context, audio, self._sampling, self._random)[:count]
        self._context = torch.cat([self._context, new])[-CONTEXT:]
        capture = self._clock.time_of((start + span) * SAMPLES_PER_FRAME - 1)
        rows = self.model.to_motion(new.numpy())
        if self._mouth is not None and not self._sync:
            heard = np.stack([self._audio[i] for i in range(max(0, start - RECEPTIVE_FIELD), start + span)])
            self._mouth.apply(rows, heard, future=span - count, gain=LIVE_MOUTH_GAIN)
        for i, row in enumerate(self._blinks.shape(rows)):
            head = row[HEAD_GUIDED].copy()
            self._head = head if self._head is None else self._head + self._head_step * (head - self._head)
            self._centre += self._centre_step * (self._head - self._centre)
            row[HEAD_GUIDED] = self._head - self._centre
            self._rows[start + i] = (row, capture)
        self._committed += count
        kept_from = (self._mouthed if self._sync else self._committed) - self._history
        for old in [i for i in self._audio if i < kept_from]:
            del self._audio[old]

    def _set_mouths(self, final: bool = False) -> None:
        """Sync latency: set the jaw of the committed frames, SYNC_UPDATE_FRAMES at a time once their lookahead
        has been heard (`final`: all the rest, the audio's end heard as silence), from the offline mouth-gap nets
        fed the Whisper states of the SYNC_WINDOW_S of audio before the batch's lookahead ends
        (`whisper_states.recent_rows`). Batches and windows fall on fixed frames, so block sizes never change
        the result."""
        mouth = self._mouth
        while True:
            if final:
                first, ready, end = self._mouthed, self._committed, self._framed
            else:
                first = self._mouthed
                ready = first + SYNC_UPDATE_FRAMES
                end = ready + mouth.ahead
                if ready > self._committed or end > self._framed:
                    break
            if ready <= first:
                break
            self._mouth_batch(first, ready, end)
            if final:
                break
        keep_from = max(0, self._mouthed * SAMPLES_PER_FRAME - int(SYNC_WINDOW_S * SAMPLE_RATE))
        if keep_from > self._recent_start:
            self._recent = self._recent[keep_from - self._recent_start:]
            self._recent_start = keep_from

    def _mouth_batch(self, first: int, ready: int, end: int) -> None:
        """The jaw of frames [first, ready), hearing the frames' audio up to `end` (`_set_mouths`)."""
        mouth = self._mouth
        if self._arrived:
            self._recent = np.concatenate([self._recent, *self._arrived])
            self._arrived = []
        # Whisper hears up to the end of frame `end` (or of the audio) from a frame boundary SYNC_WINDOW_S before.
        last = min(end * SAMPLES_PER_FRAME, self._clock.samples)
        begin = max(0, last - int(SYNC_WINDOW_S * SAMPLE_RATE))
        begin += -begin % SAMPLES_PER_FRAME
        states = self._whisper.recent_rows(self._recent[begin - self._recent_start: last - self._recent_start])
        first_frame = begin // SAMPLES_PER_FRAME
        start = max(first - mouth.history, first_frame, min(self._audio))
        heard_states = np.zeros((end - start, states.shape[1]), np.float32)   # past the audio: silence (zero)
        known = states[start - first_frame: end - first_frame]
        heard_states[: len(known)] = known
        heard = np.stack([self._audio[i] for i in range(start, end)])
        rows = np.stack([self._rows[i][0] for i in range(first, ready)])
        future = end - ready
        mouth.apply(rows, mouth.inputs(heard, heard_states), future=future, more=min(future, mouth.reach))
        capture = self._clock.time_of(last - 1)
        for i, row in zip(range(first, ready), rows):
            self._rows[i] = (row, capture)
        self._mouthed = ready

    def _emit(self, last: int, until: int | None = None) -> list[MotionFrame]:
        """Output frames at self.fps, each interpolated between its two 25 fps neighbours, once the later one
        (up to `last`) is committed; with `until`, exactly that many frames in all (the end holds the last)."""
        out = []
        while last >= 0 and (until is None or self._emitted < until):
            position = self._emitted / self.fps * FPS
            low = int(position + 1e-9)
            weight = position - low if position - low > 1e-6 else 0.0
            high = low + 1 if weight else low
            if high > last:
                if until is None:
                    break
                low = high = last                       # past the end: hold the last frame
                weight = 0.0
            (a, _), (b, capture) = self._rows[low], self._rows[high]
            frame = next(motion_frames(((1 - weight) * a + weight * b)[None], self.fps))
            voiced = self._voiced.pop(self._emitted, None) or self._last_voiced
            self._last_voiced = voiced
            frame = replace(frame, t=self._emitted / self.fps, capture_time=capture,
                            visemes=voiced.visemes if voiced else frame.visemes, voice=voiced.voice if voiced else 0.0)
            if self._gate and voiced:
                # sync latency hears far enough ahead to open the gate before the voice, as offline
                ahead = (self._voiced.get(k) for k in range(self._emitted + 1, self._emitted + 1 + self._gate_lead))
                speech = max([voiced.speech] + [v.speech for v in ahead if v is not None])
                frame = scale_mouth(frame, speech)
            out.append(frame)
            self._emitted += 1
        for old in [i for i in self._rows if i < int(self._emitted / self.fps * FPS) - 1]:
            del self._rows[old]
        return out


def pose_wait(fps: float, chunk: int = CHUNK_FRAMES, seconds: float = 2.0) -> float:
    """The largest lag (s) of an output frame's readiness behind an even schedule at `fps` that starts with the
    first frame: output frame k (time k / fps) is final once the 25 fps frame after its time is committed, which
    happens with the last frame of its `chunk` (a whole period of 25 and `fps` fits in `seconds`)."""
    lags = []
    for index in range(max(1, int(seconds * fps))):
        position = index / fps * FPS
        needed = int(position + 1e-9) + (1 if position - int(position + 1e-9) > 1e-6 else 0)
        committed = (needed // chunk + 1) * chunk        # frames committed when `needed` is
        lags.append(committed / FPS - index / fps)
    return max(lags) - lags[0]


def _torch():
    """torch, imported on first use: the rule generator and `facecast --help` never load it."""
    import torch

    return torch
