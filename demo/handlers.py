"""What the demo's buttons do, as plain methods: the page calls them, and so do the tests.

Every failure a user can cause (a file that is not audio, an empty or over-long upload, NaN
samples, out-of-range settings) is raised as :class:`gradio.Error` with a one-line message, which
Gradio shows in the page instead of a stack trace.
"""

import math
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional, Tuple, Union

import gradio as gr
import numpy as np
import torch

from codec import SpectralCodec
from generation.sampling import DEFAULT_CFG_COEF, DEFAULT_SAMPLING, SamplingParams
from vocoder.audio import AudioError, load_audio, prepare_waveform, save_audio
from vocoder.model import REFINE_BEST

from .models import DemoModels
from .pictures import spectrogram_image
from .workspace import Workspace

MAX_SEED = 2**31 - 1
# The codec tab's decoding quality: phase refinement iterations of a spectral codec's vocoder.
CODEC_QUALITY = {"default": None, "best": REFINE_BEST}
_UNTRAINED_NOTE = "Random weights: the model is untrained, so the output is noise."
NEAREST_SHOWN = 3  # trained sounds listed beside each text-to-audio prompt


@dataclass(frozen=True)
class DemoLimits:
    """What a single request may ask of a shared server."""

    max_upload_mb: float = 10.0
    max_upload_seconds: float = 30.0
    min_upload_seconds: float = 0.1
    max_prompt_seconds: float = 10.0  # continuation prompts: the LM attends over all of it
    max_generation_seconds: float = 10.0
    min_generation_seconds: float = 0.5
    max_text_chars: int = 300
    max_guidance: float = 10.0
    max_temperature: float = 2.0
    concurrency: int = 1  # requests computed at once; the rest wait in the queue
    queue_size: int = 16  # requests waiting beyond this are turned away with a message


class GenerationResult(NamedTuple):
    """Outputs of the text-to-audio and continuation handlers, in the page's output order."""

    audio: str  # path of the WAV file
    spectrogram: np.ndarray  # RGB picture [H, W, 3]
    summary: str  # Markdown: duration, time taken, seed
    seed: int


class CodecResult(NamedTuple):
    """Outputs of the codec round-trip handler, in the page's output order."""

    reconstruction: str  # path of the decoded WAV file
    original_spectrogram: np.ndarray
    reconstruction_spectrogram: np.ndarray
    summary: str  # Markdown: bitrate and sizes
    stream: str  # path of the .grvq file


@dataclass(frozen=True)
class Sampling:
    """Validated settings shared by text-to-audio and continuation: the token sampling itself is the
    library's :class:`~generation.sampling.SamplingParams`."""

    duration: float
    cfg_coef: float
    params: SamplingParams
    seed: int


class GenerationStopped(Exception):
    """Raised inside the model's progress callback when the user pressed Stop."""


def _number(name: str, value: object, low: float, high: float, integer: bool = False) -> float:
    """``value`` as a finite number in ``[low, high]`` (an integer if asked), else :class:`gr.Error`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise gr.Error(f"{name} must be a number, got {value!r}.")
    if integer and float(value) != int(value):
        raise gr.Error(f"{name} must be a whole number, got {value:g}.")
    if not low <= value <= high:
        raise gr.Error(f"{name} must be between {low:g} and {high:g}, got {value:g}.")
    return int(value) if integer else float(value)


def _format_bytes(count: int) -> str:
    if count < 1000:
        return f"{count} bytes"
    return f"{count / 1000:.1f} kB" if count < 1_000_000 else f"{count / 1e6:.1f} MB"


class DemoHandlers:
    """The demo's handlers, bound to loaded models, request limits and a private workspace."""

    def __init__(self, models: DemoModels, limits: DemoLimits, workspace: Workspace) -> None:
        self.models = models
        self.limits = limits
        self.workspace = workspace
        self._stop_requests: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------ inputs

    def read_upload(self, path: Optional[Union[str, Path]], max_seconds: float) -> Tuple[torch.Tensor, int]:
        """Read an uploaded or recorded file: ``([C, T] float32, sample_rate)``, or :class:`gr.Error`."""
        if not path:
            raise gr.Error("Please upload or record an audio file first.")
        path = Path(path)
        if not path.is_file():
            raise gr.Error("The uploaded file is gone; please upload it again.")
        size = path.stat().st_size
        if size == 0:
            raise gr.Error(f"{path.name} is empty.")
        if size > self.limits.max_upload_mb * 1e6:
            raise gr.Error(f"{path.name} is {_format_bytes(size)}; the limit is {self.limits.max_upload_mb:g} MB.")
        try:
            wav, sample_rate = load_audio(path)
        except AudioError as err:  # the message names the server-side path: show the file name only
            raise gr.Error(str(err).replace(str(path), path.name)) from None
        seconds = wav.shape[-1] / sample_rate
        if seconds > max_seconds:
            raise gr.Error(f"{path.name} is {seconds:.1f} s long; the limit is {max_seconds:g} s. Please trim it.")
        if seconds < self.limits.min_upload_seconds:
            raise gr.Error(f"{path.name} is only {seconds * 1000:.0f} ms long; please use at least "
                           f"{self.limits.min_upload_seconds:g} s of audio.")
        return wav, sample_rate

    def _text(self, text: Optional[str], required: bool) -> Optional[str]:
        text = (text or "").strip()
        if not text:
            if required:
                raise gr.Error("Please describe the sound you want, e.g. 'rain falling' or 'a kick drum hit'.")
            return None
        if len(text) > self.limits.max_text_chars:
            raise gr.Error(f"The description has {len(text)} characters; the limit is {self.limits.max_text_chars}.")
        return text

    def _sampling(self, duration: float, cfg_coef: float, temperature: float, top_k: float, top_p: float,
                  seed: Optional[float], random_seed: bool) -> Sampling:
        """Validate the settings; ``duration`` has been checked by the caller (its range differs)."""
        lim = self.limits
        return Sampling(
            duration=duration,
            cfg_coef=_number("Guidance scale", cfg_coef, 0.0, lim.max_guidance),
            params=SamplingParams(
                temperature=_number("Temperature", temperature, 0.0, lim.max_temperature),
                top_k=_number("Top-k", top_k, 0, self.models.generator.codec.codebook_size, integer=True),
                top_p=_number("Top-p", top_p, 0.0, 1.0)),
            seed=secrets.randbelow(MAX_SEED + 1) if random_seed or seed is None
            else _number("Seed", seed, 0, MAX_SEED, integer=True),
        )

    # ------------------------------------------------------------------------------------ stopping

    @staticmethod
    def _session(request: Optional[gr.Request]) -> str:
        return getattr(request, "session_hash", None) or "local"

    def stop(self, request: Optional[gr.Request] = None) -> None:
        """Ask the generation running for this browser session to stop at its next step.

        The Stop button also cancels the event (``cancels=``), which frees the page at once; this
        flag is what makes the worker thread stop computing instead of finishing in the background.
        """
        with self._lock:
            self._stop_requests.add(self._session(request))

    @contextmanager
    def _stoppable(self, request: Optional[gr.Request], progress: Callable) -> Iterator[Callable[[int, int], None]]:
        """A model progress callback that feeds ``progress`` and raises when Stop is pressed."""
        session = self._session(request)
        with self._lock:
            self._stop_requests.discard(session)

        def on_step(done: int, total: int) -> None:
            if session in self._stop_requests:
                raise GenerationStopped
            progress((done, total), desc="Generating", unit="steps")

        try:
            yield on_step
        except GenerationStopped:
            raise gr.Error("Generation stopped.") from None
        except ValueError as err:  # the models report bad settings as ValueError with a one-line reason
            raise gr.Error(str(err)) from None
        finally:
            with self._lock:
                self._stop_requests.discard(session)

    # ------------------------------------------------------------------------------------ handlers

    def known_sounds_note(self, text: Optional[str]) -> str:
        """Markdown: the trained sounds nearest to ``text`` and their similarity, and a plain warning when
        the prompt is far from everything the model learned; empty without a prompt or for random weights."""
        text = (text or "").strip()[: self.limits.max_text_chars]
        generator = self.models.generator
        if not text or not self.models.generator_trained:
            return ""
        if generator.known_sounds() is None:
            return "This model's folder lists no training vocabulary, so which sounds it knows is not known."
        nearest = generator.nearest_sounds(text, k=NEAREST_SHOWN)
        sounds = ", ".join(f"*{sound.caption}* ({sound.similarity:.2f})" for sound in nearest.sounds)
        if nearest.far:
            return (f"⚠️ **This prompt is far from anything the model learned** (text similarity below "
                    f"{nearest.threshold:.2f}). It still generates, most likely like the nearest sounds it was "
                    f"trained on: {sounds}.")
        return f"Nearest sounds it was trained on (text similarity): {sounds}."

    def generate(
        self,
        text: str,
        duration: float = 5.0,
        cfg_coef: float = DEFAULT_CFG_COEF,
        temperature: float = DEFAULT_SAMPLING.temperature,
        top_k: float = DEFAULT_SAMPLING.top_k,
        top_p: float = DEFAULT_SAMPLING.top_p,
        seed: Optional[float] = None,
        random_seed: bool = True,
        request: Optional[gr.Request] = None,
        progress=gr.Progress(),
    ) -> GenerationResult:
        """Text to audio: ``duration`` seconds from ``text``; the seed used is returned."""
        text = self._text(text, required=True)
        duration = _number("Duration", duration, self.limits.min_generation_seconds, self.limits.max_generation_seconds)
        sampling = self._sampling(duration, cfg_coef, temperature, top_k, top_p, seed, random_seed)
        generator = self.models.generator
        progress(0.0, desc="Starting")
        started = time.perf_counter()
        with self._stoppable(request, progress) as on_step:
            wav = generator.generate([text], duration=sampling.duration, cfg_coef=sampling.cfg_coef,
                                     sampling=sampling.params, seed=sampling.seed, progress=on_step)
        elapsed = time.perf_counter() - started
        seconds = wav.shape[-1] / generator.sample_rate
        summary = (f"Generated **{seconds:.2f} s** of audio in **{elapsed:.1f} s** "
                   f"({elapsed / seconds:.2f} s per second of audio) with seed **{sampling.seed}**.")
        note = self.known_sounds_note(text)
        summary += f"\n\n{note}" if note else ""
        return self._generation_result(wav, "generated", summary, sampling.seed)

    def continue_audio(
        self,
        prompt_path: Optional[str],
        text: Optional[str] = None,
        duration: float = 5.0,
        cfg_coef: float = DEFAULT_CFG_COEF,
        temperature: float = DEFAULT_SAMPLING.temperature,
        top_k: float = DEFAULT_SAMPLING.top_k,
        top_p: float = DEFAULT_SAMPLING.top_p,
        seed: Optional[float] = None,
        random_seed: bool = True,
        request: Optional[gr.Request] = None,
        progress=gr.Progress(),
    ) -> GenerationResult:
        """Continue an uploaded or recorded prompt; ``duration`` is the length of the whole result,
        prompt included, and the prompt's end is marked on the spectrogram."""
        prompt, prompt_rate = self.read_upload(prompt_path, self.limits.max_prompt_seconds)
        prompt_seconds = prompt.shape[-1] / prompt_rate
        text = self._text(text, required=False)
        # ``duration`` counts the prompt; what is generated after it obeys the usual limits.
        low, high = (round(prompt_seconds + s, 1) for s in (self.limits.min_generation_seconds,
                                                             self.limits.max_generation_seconds))
        number = isinstance(duration, (int, float, np.number)) and not isinstance(duration, bool)
        if not number or not low <= duration <= high:
            raise gr.Error(f"The prompt is {prompt_seconds:.1f} s long, so the total duration must be between "
                           f"{low:g} and {high:g} s, got {duration!r}.")
        sampling = self._sampling(float(duration), cfg_coef, temperature, top_k, top_p, seed, random_seed)
        generator = self.models.generator
        progress(0.0, desc="Starting")
        started = time.perf_counter()
        with self._stoppable(request, progress) as on_step:
            wav = generator.generate_continuation(
                prompt, prompt_rate, descriptions=None if text is None else [text], duration=sampling.duration,
                cfg_coef=sampling.cfg_coef, sampling=sampling.params, seed=sampling.seed, progress=on_step)
        elapsed = time.perf_counter() - started
        seconds = wav.shape[-1] / generator.sample_rate
        summary = (f"The prompt ends at **{prompt_seconds:.2f} s** (cyan line); the remaining "
                   f"**{seconds - prompt_seconds:.2f} s** are generated. "
                   f"Took **{elapsed:.1f} s**, seed **{sampling.seed}**.")
        return self._generation_result(wav, "continued", summary, sampling.seed, marker_seconds=prompt_seconds)

    def _generation_result(self, wav: torch.Tensor, stem: str, summary: str, seed: int,
                           marker_seconds: Optional[float] = None) -> GenerationResult:
        """Save the first item of ``wav [B, 1, T]`` as the generator returns it (by default at the
        training corpus's level, -20 dBFS RMS) and draw it; random weights get a note."""
        sample_rate = self.models.generator.sample_rate
        audio = wav[0, 0].float().cpu()
        path = self.workspace.new_file(stem, ".wav")
        save_audio(path, audio, sample_rate)
        if not self.models.generator_trained:
            summary += f"\n\n{_UNTRAINED_NOTE}"
        picture = spectrogram_image(audio, sample_rate, marker_seconds=marker_seconds)
        return GenerationResult(str(path), picture, summary, seed)

    def codec_roundtrip(self, audio_path: Optional[str], num_codebooks: Optional[float] = None,
                        quality: str = "default") -> CodecResult:
        """Compress an upload to a ``.grvq`` stream with ``num_codebooks`` codebooks and decode it back
        (``quality="best"``: the vocoder's best-quality phase refinement, slower)."""
        if quality not in CODEC_QUALITY:
            raise gr.Error(f"Quality must be one of {', '.join(CODEC_QUALITY)}, got {quality!r}.")
        codec = self.models.codec
        wav, sample_rate = self.read_upload(audio_path, self.limits.max_upload_seconds)
        allowed = self.models.codebook_choices()
        count = allowed[-1] if num_codebooks is None else _number("Codebooks", num_codebooks, 1, allowed[-1],
                                                                  integer=True)
        if count not in allowed:
            raise gr.Error(f"Codebooks must be one of {', '.join(map(str, allowed))}, got {count}.")
        started = time.perf_counter()
        try:
            data = codec.compress(wav, sample_rate, num_codebooks=count)
            refine = CODEC_QUALITY[quality] if isinstance(codec, SpectralCodec) else None
            decoded, decoded_rate = codec.decompress(data, refine=refine)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        elapsed = time.perf_counter() - started

        stem = Path(audio_path).stem[:40] or "audio"
        stream_path = self.workspace.new_file(stem, ".grvq")
        stream_path.write_bytes(data)
        reconstruction = decoded[0, 0].float().cpu()
        wav_path = self.workspace.new_file(f"{stem}-decoded", ".wav")
        save_audio(wav_path, reconstruction, decoded_rate)

        original = prepare_waveform(wav, sample_rate, codec.sample_rate)[0, 0]  # same rate as the output
        original_bytes = Path(audio_path).stat().st_size
        pcm_bytes = original.shape[-1] * 2  # 16-bit mono PCM at the codec's rate
        summary = (
            f"**{codec.bitrate_for(count) / 1000:g} kbit/s** ({count} of {codec.num_codebooks} codebooks, "
            f"{codec.frame_rate:g} frames/s). The `.grvq` stream is **{_format_bytes(len(data))}**: "
            f"the uploaded file is {_format_bytes(original_bytes)} ({original_bytes / len(data):.0f}x larger) "
            f"and 16-bit {codec.sample_rate // 1000} kHz mono PCM would be {_format_bytes(pcm_bytes)} "
            f"({pcm_bytes / len(data):.0f}x). Encoded and decoded in {elapsed:.2f} s."
        )
        if not self.models.codec_trained:
            summary += f"\n\n{_UNTRAINED_NOTE}"
        return CodecResult(
            str(wav_path),
            spectrogram_image(original, codec.sample_rate),
            spectrogram_image(reconstruction, decoded_rate),
            summary,
            str(stream_path),
        )
