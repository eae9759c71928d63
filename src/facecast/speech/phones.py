"""Phone segmentation of speech with pocketsphinx's allphone decoder, as per-hop features.

Why: the learned-motion issue asks whether a phone-level description of speech
drives the mouth better than the spectrum (log-mel). pocketsphinx ships a
US-English acoustic model and a phone language model inside its wheel, so
nothing is downloaded. Its allphone mode decodes a phone sequence with times
(10 ms frames, the same hop as our audio features); each hop becomes a one-hot
row over the 39 CMU phones plus silence. It needs the whole utterance before
its segmentation is final, so it is an offline feature (see the model card for
how it compared).
"""

from __future__ import annotations

import os

import numpy as np

from facecast.errors import FacecastError

#: The CMU dictionary's 39 phones, then silence (fillers and noise count as silence).
PHONES = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
          "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z",
          "ZH", "SIL")
SILENCE = PHONES.index("SIL")
SAMPLE_RATE = 16000


class PhoneSegmenter:
    """pocketsphinx allphone decoding of 16 kHz mono speech into 10 ms phone labels."""

    def __init__(self) -> None:
        try:  # pocketsphinx is optional (the `train` extra): imported only when used
            from pocketsphinx import Decoder, get_model_path
        except ImportError:
            raise FacecastError("phone segmentation needs pocketsphinx: pip install 'facecast[train]'") from None
        phone_lm = os.path.join(get_model_path(), "en-us", "en-us-phone.lm.bin")
        self._decoder = Decoder(allphone=phone_lm, lm=None, lw=2.0, beam=1e-20, pbeam=1e-20, loglevel="FATAL")

    def labels(self, samples: np.ndarray) -> np.ndarray:
        """(H,) phone index (into PHONES) of each 10 ms hop of `samples`."""
        hops = len(samples) // (SAMPLE_RATE // 100)
        out = np.full(hops, SILENCE, np.int64)
        if hops == 0:
            return out
        pcm = (np.clip(np.asarray(samples, np.float64), -1.0, 1.0) * 32767).astype(np.int16)
        decoder = self._decoder
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        for segment in decoder.seg():
            phone = segment.word if segment.word in PHONES else "SIL"
            out[max(segment.start_frame, 0): segment.end_frame + 1] = PHONES.index(phone)
        return out


def phone_track(samples: np.ndarray, segmenter: PhoneSegmenter | None = None) -> np.ndarray:
    """(H, len(PHONES)) one-hot phone of each 10 ms hop of 16 kHz speech."""
    labels = (segmenter or PhoneSegmenter()).labels(samples)
    return np.eye(len(PHONES), dtype=np.float32)[labels]
