"""The mouth-gap nets: they set the jaw so the rendered lips part as predicted, with a bounded lookahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from conftest import HELD_OUT_CLIPS
from facecast.dataset.cache import clip_audio, load_clip
from facecast.evaluation.motion_quality import pearson
from facecast.media import decode_mono
from facecast.motion import EXPRESSION_CHANNELS, resample_frames
from facecast.speech import mouth_gap
from facecast.speech.learned import (
    FPS,
    MOTION_DIMS,
    WEIGHTS_PATH,
    LearnedMotion,
    frame_audio,
    learned_motion,
    offline_states,
    read_model,
)
from facecast.speech.mouth_gap import (
    CLOSURE_EXPONENT,
    GAP_GEOMETRY_KEY,
    IN_SPEECH_EXPONENT,
    JAW,
    LIVE_LOOKAHEAD,
    OFFLINE_LOOKAHEAD,
    MouthGap,
    rendered_gap,
)


def _frame_audio(rel: str, dataset: tuple[Path, Path]) -> tuple[np.ndarray, dict]:
    data, cache = dataset
    clip = load_clip(rel, cache)
    frames = len(resample_frames(np.asarray(clip["head"], np.float32), float(clip["fps"]), FPS))
    return frame_audio(clip_audio(clip, "logmel", data, cache), frames, "logmel"), clip


def test_the_jaw_is_set_so_the_rendered_gap_is_the_predicted_one(tiny_model: Path,
                                                                 held_out_dataset: tuple[Path, Path]) -> None:
    model = LearnedMotion(tiny_model)
    assert set(model.mouth) == {OFFLINE_LOOKAHEAD, LIVE_LOOKAHEAD}
    audio, _ = _frame_audio(HELD_OUT_CLIPS[0], held_out_dataset)
    net = model.mouth[OFFLINE_LOOKAHEAD]
    # the offline nets hear the recording's Whisper states beside its log-mel
    states = offline_states(model, decode_mono(held_out_dataset[0] / HELD_OUT_CLIPS[0]))
    audio = net.inputs(audio, np.concatenate([states, np.zeros((len(audio), states.shape[1]))])[: len(audio)])
    rows = np.random.default_rng(0).uniform(0, 0.3, (len(audio), MOTION_DIMS)).astype(np.float32)
    gap, closure, inside = net.predict(audio)
    # the offline recipe's shut-lips output alone closes the lips: its in-speech closure is trained, not applied
    assert not net.in_speech_closure and model.mouth[LIVE_LOOKAHEAD].in_speech_closure
    # ... and offline the opening is smoothed over a frame each way (a stream could not wait for it), the closures
    # left sharp
    assert net.smoothing == 1.0 and model.mouth[LIVE_LOOKAHEAD].smoothing == 0.0
    # ... and their shut-lips output closes more strongly than the live nets' (the exponent the folds chose)
    assert net.closure_exponent == 2.0 and model.mouth[LIVE_LOOKAHEAD].closure_exponent == CLOSURE_EXPONENT
    target = gaussian_filter1d(np.maximum(gap, 0), net.smoothing, mode="nearest") * (1 - closure ** 2.0)
    assert np.allclose(net.target(audio), target)
    lips = rows.copy()
    lips[:, :2] = 0                                         # what the other lip coefficients part alone
    per = net.per_coefficient                               # the lip geometry stored beside the nets
    assert (rendered_gap(lips, per) > target + 1e-3).any()  # some frames: the lips alone part wider than asked
    net.apply(rows, audio)
    inside = rows[:, JAW] < 1
    assert inside.mean() > 0.9
    assert np.allclose(rendered_gap(rows, per)[inside], target[inside], atol=1e-5)   # closures close too
    assert per[JAW] == pytest.approx(0.22, abs=0.01)        # the renderer's wide-open jaw
    assert per[EXPRESSION_CHANNELS.index("mouthClose")] < 0


def test_prediction_is_causal_up_to_the_lookahead_and_the_same_in_blocks(tiny_model: Path,
                                                                         held_out_dataset: tuple[Path, Path],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    audio, _ = _frame_audio(HELD_OUT_CLIPS[1], held_out_dataset)
    net = LearnedMotion(tiny_model).mouth[LIVE_LOOKAHEAD]
    whole = np.array(net.predict(audio))
    assert whole.shape == (3, len(audio)) and whole[2].std() > 0      # gap, shut, in-speech closure
    # the first 40 frames, heard with their 2 frames of lookahead, come out as from the whole clip
    early = np.array(net.predict(audio[: 40 + LIVE_LOOKAHEAD], future=LIVE_LOOKAHEAD))
    assert early.shape == (3, 40) and np.allclose(early, whole[:, :40], atol=1e-5)
    whole = whole[0]
    # audio further ahead changes nothing; less lookahead than the net's (silence instead) does
    assert np.allclose(net.predict(audio[:50], future=10)[0], whole[:40], atol=1e-5)
    assert not np.allclose(net.predict(audio[:40])[0][-1], whole[39], atol=1e-4)
    monkeypatch.setattr(mouth_gap, "BLOCK_FRAMES", 17)                    # long audio goes in blocks
    assert np.allclose(net.predict(audio)[0], whole, atol=1e-5)


def test_the_fused_ensemble_is_the_mean_of_its_nets(held_out_dataset: tuple[Path, Path]) -> None:
    """`MouthGap` runs its seeds as one grouped net (for the live stream's speed): each member run on its own
    and averaged gives the same gap and closure."""
    import torch

    from facecast.speech.mouth_gap import RECEPTIVE_FIELD, build_net

    shipped = LearnedMotion().mouth[LIVE_LOOKAHEAD]
    members = read_model(WEIGHTS_PATH)["mouth"][str(LIVE_LOOKAHEAD)]["nets"]
    audio, _ = _frame_audio(HELD_OUT_CLIPS[2], held_out_dataset)
    assert len(members) == 2
    outs = []
    for weights in members:
        net = build_net()
        net.load_state_dict(weights)
        net.eval()
        block = np.concatenate([audio, np.full((LIVE_LOOKAHEAD, audio.shape[1]), audio.min(), np.float32)])
        with torch.inference_mode():
            outs.append(net(torch.from_numpy(block.T[None].copy()))[0, :, LIVE_LOOKAHEAD:].numpy())
    mean = np.mean(outs, 0)
    gap, closure, inside = shipped.predict(audio)
    assert np.allclose(gap, mean[0] * shipped.std + shipped.mean, atol=1e-4)
    assert np.allclose(closure, 1 / (1 + np.exp(-mean[1])), atol=1e-5)
    assert np.allclose(inside, 1 / (1 + np.exp(-mean[2])), atol=1e-5)
    assert len(audio) > RECEPTIVE_FIELD


def test_the_in_speech_closure_shuts_the_lips_where_the_nets_say_it_does() -> None:
    """Nets store whether their third output shuts the lips (`Recipe.in_speech_closure`); files from before
    that flag always applied it."""
    import torch

    from facecast.speech.mouth_gap import FRAME_DIMS, build_net

    torch.manual_seed(0)
    nets = [build_net().state_dict()]
    geometry = read_model(WEIGHTS_PATH)[GAP_GEOMETRY_KEY].numpy()
    audio = np.random.default_rng(0).normal(-3, 1, (60, FRAME_DIMS)).astype(np.float32)
    targets = {}
    for flag in (None, True, False):
        state = {"lookahead": 2, "mean": 0.1, "std": 0.05, "nets": nets}
        if flag is not None:
            state["in_speech_closure"] = flag
        net = MouthGap(state, geometry)
        gap, closure, inside = net.predict(audio)
        assert inside.std() > 0
        targets[flag] = net.target(audio)
        shut = np.maximum(gap, 0) * (1 - closure ** CLOSURE_EXPONENT)
        assert np.allclose(targets[flag], shut * (1 - inside ** IN_SPEECH_EXPONENT) if flag is not False else shut)
    assert np.array_equal(targets[None], targets[True]) and (targets[False] > targets[True]).any()


def test_nets_from_before_the_in_speech_closure_output_still_work() -> None:
    """A model file whose nets have two outputs (gap, shut) predicts no in-speech closures and shuts by the
    second output alone."""
    import torch

    from facecast.speech.mouth_gap import FRAME_DIMS, build_net

    torch.manual_seed(0)
    state = {"lookahead": 2, "mean": 0.1, "std": 0.05, "nets": [build_net(outputs=2).state_dict()]}
    net = MouthGap(state, read_model(WEIGHTS_PATH)[GAP_GEOMETRY_KEY].numpy())
    audio = np.random.default_rng(0).normal(-3, 1, (60, FRAME_DIMS)).astype(np.float32)
    gap, closure, inside = net.predict(audio)
    assert not inside.any() and closure.std() > 0
    assert np.allclose(net.target(audio), np.maximum(gap, 0) * (1 - closure ** CLOSURE_EXPONENT))
    # the speaker folds' exponent sweep (benchmarks/mouth_gap_folds.py --closure-exponents): a larger exponent
    # shuts the lips less wherever the nets are unsure
    eight = net.target(audio, closure_exponent=8.0)
    assert np.allclose(eight, np.maximum(gap, 0) * (1 - closure ** 8.0))
    assert (eight >= net.target(audio) - 1e-7).all() and (eight > net.target(audio)).any()


def test_the_shipped_model_parts_the_lips_like_an_unseen_speaker(held_out_dataset: tuple[Path, Path]) -> None:
    """Held-out GRID s4 clips: the shipped model's rendered gap follows the real mouth (on these three, r 0.75;
    the diffusion model's own lips 0.49; the quality benchmark measures it on 59 held-out clips, rendered)."""
    from facecast.media import decode_mono

    data, _ = held_out_dataset
    per = read_model(WEIGHTS_PATH)[GAP_GEOMETRY_KEY].numpy()
    r = []
    for rel in HELD_OUT_CLIPS[:3]:
        _, clip = _frame_audio(rel, held_out_dataset)
        samples = decode_mono(data / rel)
        frames = round(len(samples) / 16000 * FPS)
        motion = learned_motion(samples, FPS, frames)
        rows = np.array([[f.expression(name) for name in EXPRESSION_CHANNELS] for f in motion])
        real = resample_frames(clip["mouth_opening"][:, None].astype(np.float32), float(clip["fps"]), FPS,
                               count=frames)[:, 0]
        r.append(pearson(rendered_gap(rows, per), real))
    assert np.mean(r) > 0.6, r


def test_the_shipped_nets_are_small_and_have_only_the_runtime_outputs() -> None:
    """Training-only targets (the Whisper teacher's components) never reach the shipped file: its nets have
    the runtime's outputs, and the whole model file stays small (under 17 MB; today 16.1 MB: eight offline nets, four
    hearing each encoder, and two live)."""
    import torch

    from facecast.speech.learned import WEIGHTS_PATH

    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    assert WEIGHTS_PATH.stat().st_size < 17 * 1024 * 1024
    for nets in state["mouth"].values():
        assert all(net["out.weight"].shape[0] == mouth_gap.OUTPUTS for net in nets["nets"])


def test_band_normalisation_takes_the_microphone_away_and_streams_exactly(held_out_dataset: tuple[Path, Path]) -> None:
    """A microphone's colour (a fixed gain per mel band, up to +-6 dB) is what per-band normalisation removes:
    the same speech through two microphones gives frames ~39 % of their spread apart before, ~5 % after
    (past the stream's first 3 s); the streaming form pushed a frame at a time, as live audio comes, gives
    exactly what the whole clip gives; each band of the voice comes out near zero mean and unit variance."""
    from facecast.training.mouth_gap import voice_statistics

    mean, var = voice_statistics([_frame_audio(rel, held_out_dataset)[0] for rel in HELD_OUT_CLIPS[:3]])
    audio, _ = _frame_audio(HELD_OUT_CLIPS[3], held_out_dataset)
    coloured = audio + np.tile(np.random.default_rng(0).uniform(-0.3, 0.3, 40), 4).astype(np.float32)
    voice = audio.reshape(len(audio), -1, 40).mean((1, 2)) > mouth_gap.VOICE_LEVEL
    settled = voice & (np.arange(len(audio)) >= 3 * FPS)
    assert settled.sum() > 50
    before = np.abs(audio - coloured)[settled].mean() / np.abs(audio - audio[voice].mean(0))[settled].mean()
    assert before > 0.3
    for kind in ("utterance", "stream"):
        normaliser = mouth_gap.BandNormaliser(kind, mean, var)
        plain = normaliser.push(audio)
        normaliser.reset()
        other = normaliser.push(coloured)
        after = np.abs(plain - other)[settled].mean() / np.abs(plain)[settled].mean()
        assert after < 0.2 * before, (kind, after, before)
        bands = plain[settled].reshape(-1, 40)
        assert np.abs(bands.mean(0)).max() < 0.3 and np.all(np.abs(bands.std(0) - 1) < 0.25), kind
    stream = mouth_gap.BandNormaliser("stream", mean, var)
    whole = stream.push(audio)
    stream.reset()
    pieces = np.concatenate([stream.push(audio[i: i + 1]) for i in range(len(audio))])
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
