"""AudioGen-style text-to-audio generation over codec tokens.

A frozen text encoder (MiniLM by default) conditions a decoder-only transformer over codec
tokens laid out by a codebook interleaving pattern (delay by default); sampling uses top-k /
top-p / temperature with classifier-free guidance, a seed, and a key/value cache; the codec
decodes the tokens to audio.

>>> from generation import AudioGen
>>> gen = AudioGen.from_pretrained("path/to/model")   # a directory holding lm/ and codec/
>>> wav = gen.generate(["a dog barking"], duration=5.0, seed=0)
"""

from .audiogen import MAX_DURATION, AudioGen
from .conditioners import ConditionerError, TextCondition, TextConditioner, build_conditioner
from .patterns import PATTERNS, CodebookPattern
from .sampling import SamplingParams
from .transformer import AudioLanguageModel, LMConfig, LMLoss

__all__ = [
    "MAX_DURATION",
    "PATTERNS",
    "AudioGen",
    "AudioLanguageModel",
    "CodebookPattern",
    "ConditionerError",
    "LMConfig",
    "LMLoss",
    "SamplingParams",
    "TextCondition",
    "TextConditioner",
    "build_conditioner",
]
