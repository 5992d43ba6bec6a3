"""Signal layer and APNet-style frame-level vocoder.

Holds what every other part of the toolkit builds on: audio I/O, the STFT / mel frontend, the
real-valued inverse STFT, the amplitude/phase spectrum head, the discriminators and the losses.
"""

from .audio import AudioError, load_audio, prepare_waveform, save_audio
from .checkpoint import CheckpointError
from .model import Vocoder, VocoderConfig
from .spectral import InverseSTFT, MelConfig, MelSpectrogram, stft

__all__ = [
    "AudioError",
    "CheckpointError",
    "InverseSTFT",
    "MelConfig",
    "MelSpectrogram",
    "load_audio",
    "prepare_waveform",
    "save_audio",
    "stft",
    "Vocoder",
    "VocoderConfig",
]
