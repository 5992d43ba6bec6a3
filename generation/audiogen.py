"""AudioGen: text -> codec tokens (audio language model) -> waveform (codec decoder).

>>> gen = AudioGen.from_pretrained("path/to/model")       # a dir holding lm/ and codec/
>>> wav = gen.generate(["a dog barking", "rain on a tin roof"], duration=5.0, seed=0)
>>> wav.shape                                             # [2, 1, T] at gen.sample_rate
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from codec import Codec, CodecConfig, SpectralCodecConfig
from vocoder.audio import CORPUS_RMS_DB, ArrayLike, normalize_loudness, prepare_waveform
from vocoder.checkpoint import (CheckpointError, push_checked_folder, resolve_pretrained, upload_model_folder,
                               write_model_card)
from vocoder.cli import seeded

from .conditioners import TextCondition, TextConditioner, build_conditioner
from .sampling import DEFAULT_CFG_COEF, DEFAULT_SAMPLING, SamplingParams, check_cfg_coef
from .transformer import AudioLanguageModel, LMConfig
from .vocabulary import FAR_SIMILARITY, MIN_RECORDINGS, VOCABULARY_FILE, NearestSounds, SoundIndex, Vocabulary, \
    read_vocabulary, write_vocabulary

DEFAULT_PRETRAINED = Path(__file__).parent / "pretrained" / "default"
MAX_DURATION = 300.0  # seconds; longer requests are almost certainly a unit mistake (ms, samples)

Progress = Union[bool, Callable[[int, int], None]]


@dataclass(frozen=True)
class Window:
    """One pass of the sliding window: ``context`` frames kept as prompt, ``new`` frames generated."""

    context: int
    new: int


class AudioGen:
    """Text-to-audio generation from a text conditioner, an :class:`AudioLanguageModel` and a codec.

    Generation longer than the LM's context slides a window: the last ``max_duration -
    extend_stride`` seconds are kept as prompt and ``extend_stride`` seconds are generated, until
    the requested duration is reached.
    """

    def __init__(self, lm: AudioLanguageModel, codec: Codec, conditioner: Optional[TextConditioner] = None) -> None:
        config = lm.config
        if codec.codebook_size != config.codebook_size:
            raise ValueError(f"LM expects {config.codebook_size} codes per codebook, the codec has {codec.codebook_size}")
        codec.quantizer.check_num_codebooks(config.num_codebooks)
        conditioner = conditioner if conditioner is not None else build_conditioner(config.conditioner)
        if conditioner.output_dim != config.text_dim:
            raise ValueError(f"LM expects {config.text_dim}-d text states, the conditioner gives {conditioner.output_dim}")
        self.lm = lm.eval()
        self.codec = codec.eval()
        self.conditioner = conditioner.eval().to(lm.device)
        self.vocabulary: Optional[Vocabulary] = None  # what it was trained on, when its folder says
        self._sound_indexes: dict = {}

    # ------------------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(cls, path: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu",
                        *, revision: Optional[str] = None) -> "AudioGen":
        """Load ``path/lm`` and its codec (``None``: the model shipped in ``generation/pretrained/default``).

        ``path`` is a local folder or a Hugging Face Hub repo id ``user/name`` (at ``revision``), as
        for :meth:`Codec.from_pretrained <vocoder.checkpoint.Pretrained.from_pretrained>`.
        The codec is ``path/codec``, or, without that folder, the shipped codec. A ``codec.json``
        reference (the fingerprint of the codec the LM was trained with) is checked against whichever
        is loaded: an LM is only valid for the token space of its own codec.
        """
        path = resolve_pretrained(path if path is not None else DEFAULT_PRETRAINED, revision, AUDIOGEN_FILES)
        if not path.is_dir():
            raise CheckpointError(f"no AudioGen model at {path}; train one with the recipes, or build one "
                                  f"with AudioGen(lm, codec) / AudioGen.random_init()")
        if not (path / "lm").is_dir():  # else a relative "name/lm" would be looked up on the Hub
            raise CheckpointError(f"{path / 'lm'} is not a directory: an AudioGen folder holds lm/")
        lm = AudioLanguageModel.from_pretrained(path / "lm", device=device)
        reference = path / CODEC_REFERENCE
        if (path / "codec").is_dir():
            codec = Codec.from_pretrained(path / "codec", device=device)
            if reference.is_file():
                check_codec_reference(reference, codec, f"{path / 'codec'} is not the codec this language model "
                                                        f"was trained with")
        elif reference.is_file():
            codec = Codec.from_pretrained(None, device=device)
            check_codec_reference(reference, codec)
        else:
            raise CheckpointError(f"{path} holds neither a codec/ folder nor a {CODEC_REFERENCE} naming the codec")
        model = cls(lm, codec)
        model.vocabulary = read_vocabulary(path / VOCABULARY_FILE)  # None: an unknown vocabulary
        return model

    @classmethod
    def random_init(cls, lm_config: Optional[LMConfig] = None, codec_config: Optional[CodecConfig] = None,
                    seed: int = 0) -> "AudioGen":
        """Random weights (default: :meth:`LMConfig.small`, default codec): runs every code path, makes noise."""
        with seeded(seed):
            codec = Codec(codec_config or SpectralCodecConfig())
            lm_config = lm_config or LMConfig.small(num_codebooks=codec.num_codebooks, codebook_size=codec.codebook_size)
            return cls(AudioLanguageModel(lm_config), codec)

    def save_pretrained(self, directory: Union[str, Path]) -> Path:
        """Write ``lm/`` and ``codec/`` (config.json + model.safetensors each) under ``directory``."""
        directory = Path(directory)
        self.lm.save_pretrained(directory / "lm")
        self.codec.save_pretrained(directory / "codec")
        if self.vocabulary is not None:
            write_vocabulary(directory / VOCABULARY_FILE, self.vocabulary)
        return directory

    def push_to_hub(self, repo_id: str, card: Optional[Union[str, Path]] = None, *, revision: Optional[str] = None,
                    private: Optional[bool] = None, token: Optional[str] = None,
                    commit_message: Optional[str] = None) -> str:
        """Publish ``lm/`` and ``codec/`` (as :meth:`save_pretrained` writes them) and ``README.md`` (a
        copy of the markdown file ``card``, or a short generated card) to the Hugging Face Hub repo
        ``repo_id``; returns the commit's URL."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp))
            write_model_card(folder, card, type(self), repo_id)
            return upload_model_folder(folder, repo_id, revision=revision, private=private, token=token,
                                       commit_message=commit_message or "Upload AudioGen")

    @classmethod
    def push_folder_to_hub(cls, folder: Union[str, Path], repo_id: str, *, revision: Optional[str] = None,
                           private: Optional[bool] = None, token: Optional[str] = None,
                           commit_message: Optional[str] = None) -> str:
        """Publish a saved AudioGen folder as it is (``lm/``, ``codec/`` or ``codec.json``, its model
        card and every other file) once :meth:`from_pretrained` loads it; returns the commit's URL."""
        return push_checked_folder(cls.from_pretrained, folder, repo_id, revision=revision, private=private,
                                   token=token, commit_message=commit_message)

    def to(self, device: Union[str, torch.device]) -> "AudioGen":
        for part in (self.lm, self.codec, self.conditioner):
            part.to(device)
        return self

    # ---------------------------------------------------------------------------- what it knows

    def known_sounds(self) -> Optional[Vocabulary]:
        """The training vocabulary (captions and target classes with their recordings), or None when
        the model's folder did not say (no ``vocabulary.json``)."""
        return self.vocabulary

    def nearest_sounds(self, prompt: str, k: int = 5, threshold: float = FAR_SIMILARITY,
                       min_recordings: int = MIN_RECORDINGS) -> NearestSounds:
        """The ``k`` training captions nearest to ``prompt`` by the model's own text encoder (cosine
        similarity of mean-pooled sentence embeddings), among captions with at least ``min_recordings``
        recordings; ``.far`` says the prompt is far from all of them (nearest below ``threshold``), so
        the model will answer with the nearest kind it learned. Raises ValueError if the vocabulary is unknown.

        >>> gen.nearest_sounds("a sword fight").sounds[0].caption
        'swords clashing'
        """
        if self.vocabulary is None:
            raise ValueError("this model's training vocabulary is unknown: its folder has no vocabulary.json")
        key = (id(self.vocabulary), min_recordings)
        if key not in self._sound_indexes:  # the captions are embedded once per vocabulary
            self._sound_indexes = {key: SoundIndex(self.vocabulary, self.conditioner, min_recordings)}
        return self._sound_indexes[key].nearest(prompt, k, threshold)

    # -------------------------------------------------------------------------------- properties

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def device(self) -> torch.device:
        return self.lm.device

    @property
    def max_duration(self) -> float:
        """Seconds of audio the LM sees at once; longer generation slides a window."""
        return self._window_frames / self.frame_rate

    @property
    def _window_frames(self) -> int:
        return self.lm.pattern.max_frames(self.lm.config.max_seq_len)

    # -------------------------------------------------------------------------------- generation

    def generate(self, descriptions: Union[str, Sequence[str]], *, duration: float = 5.0,
                 cfg_coef: float = DEFAULT_CFG_COEF, sampling: SamplingParams = DEFAULT_SAMPLING,
                 seed: Optional[int] = None, progress: Progress = False, extend_stride: Optional[float] = None,
                 target_db: Optional[float] = CORPUS_RMS_DB) -> torch.Tensor:
        """Audio ``[B, 1, T]`` at :attr:`sample_rate` for each description (``T = frames * hop``).

        ``descriptions`` is a list of texts (a single string is one); an empty list or a blank text
        is a ValueError (unconditional audio: :meth:`generate_continuation` without descriptions).
        The other arguments are keyword-only. ``cfg_coef`` is the classifier-free guidance scale γ
        (1 = no guidance, which skips the unconditional pass). ``sampling`` is how each token is
        drawn (:class:`~generation.sampling.SamplingParams`: temperature, top-k, top-p, e.g.
        ``SamplingParams(top_k=50)``; ``temperature=0`` is greedy). The same ``seed`` gives the same
        audio. ``progress`` is ``True`` for a tqdm bar or a callable ``(generated_steps, total_steps)``.
        ``extend_stride`` (seconds, default half the context) is the hop of the sliding window
        used beyond :attr:`max_duration`. ``target_db`` is each item's RMS level in dBFS, lowered
        where its peak would pass 0.95: by default the training corpus's -20 dBFS, as the CLI and the
        demo write it; ``None`` keeps the level the codec decodes (a few dB quieter).
        """
        check_target_db(target_db)
        tokens = self.generate_tokens(descriptions, duration=duration, cfg_coef=cfg_coef, sampling=sampling, seed=seed,
                                      progress=progress, extend_stride=extend_stride)
        return set_level(self.codec.decode(tokens), target_db)

    def generate_tokens(self, descriptions: Union[str, Sequence[str]], *, duration: float = 5.0,
                        cfg_coef: float = DEFAULT_CFG_COEF, sampling: SamplingParams = DEFAULT_SAMPLING,
                        seed: Optional[int] = None, progress: Progress = False,
                        extend_stride: Optional[float] = None) -> torch.Tensor:
        """Codec tokens ``LongTensor [B, K, F]`` for each description; arguments as :meth:`generate`."""
        return self._generate(_check_descriptions(descriptions), None, duration, cfg_coef, sampling, seed, progress,
                              extend_stride)

    def generate_continuation(self, prompt: ArrayLike, prompt_sample_rate: int,
                              descriptions: Union[None, str, Sequence[str]] = None, *, duration: float = 5.0,
                              cfg_coef: float = DEFAULT_CFG_COEF, sampling: SamplingParams = DEFAULT_SAMPLING,
                              seed: Optional[int] = None, progress: Progress = False,
                              extend_stride: Optional[float] = None,
                              target_db: Optional[float] = CORPUS_RMS_DB) -> torch.Tensor:
        """Continue ``prompt`` (``[T]``, ``[C, T]`` or ``[B, C, T]``, any rate) up to ``duration`` seconds in all.

        The prompt, cut to whole codec frames (:meth:`encode_prompt`), is encoded with the codec and
        its tokens are kept unchanged at the start of the output, which is re-synthesised by the codec.
        Without ``descriptions`` generation is unconditional (and guidance is off); a single prompt may
        be continued for several descriptions. Other arguments (``target_db``: the whole output's
        level, prompt included) as :meth:`generate`.
        """
        check_target_db(target_db)
        codes = self.encode_prompt(prompt, prompt_sample_rate)
        tokens = self.generate_continuation_tokens(codes, descriptions, duration=duration, cfg_coef=cfg_coef,
                                                   sampling=sampling, seed=seed, progress=progress,
                                                   extend_stride=extend_stride)
        return set_level(self.codec.decode(tokens), target_db)

    def encode_prompt(self, prompt: ArrayLike, prompt_sample_rate: int) -> torch.Tensor:
        """Tokens ``[B, K, P]`` of ``prompt`` (any layout and rate) cut to whole codec frames,
        ``P = floor(T / hop)`` at the codec's rate: a last frame over zero padding would end the
        prompt in a fade that the continuation follows."""
        wav = prepare_waveform(prompt, prompt_sample_rate, self.sample_rate)
        whole = wav.shape[-1] // self.codec.hop_length * self.codec.hop_length
        if whole == 0:
            raise ValueError(f"the prompt must last at least one codec frame ({1000 / self.frame_rate:g} ms), "
                             f"got {wav.shape[-1] / self.sample_rate * 1000:.1f} ms")
        return self.codec.encode(wav[..., :whole], self.sample_rate, num_codebooks=self.lm.config.num_codebooks)

    def generate_continuation_tokens(self, prompt_tokens: torch.Tensor,
                                     descriptions: Union[None, str, Sequence[str]] = None, *, duration: float = 5.0,
                                     cfg_coef: float = DEFAULT_CFG_COEF, sampling: SamplingParams = DEFAULT_SAMPLING,
                                     seed: Optional[int] = None, progress: Progress = False,
                                     extend_stride: Optional[float] = None) -> torch.Tensor:
        """Tokens ``[B, K, F]`` that start with ``prompt_tokens [B, K, P]`` (unchanged); see :meth:`generate_continuation`."""
        config = self.lm.config
        if isinstance(prompt_tokens, np.ndarray):
            prompt_tokens = torch.from_numpy(prompt_tokens)
        if not isinstance(prompt_tokens, torch.Tensor):
            raise ValueError(f"prompt tokens must be a tensor or numpy array, got {type(prompt_tokens).__name__}")
        if prompt_tokens.dim() != 3 or prompt_tokens.shape[1] != config.num_codebooks or prompt_tokens.shape[-1] == 0 \
                or prompt_tokens.dtype.is_floating_point:
            raise ValueError(f"prompt tokens must be integers shaped [B, {config.num_codebooks}, P>0], "
                             f"got {tuple(prompt_tokens.shape)} {prompt_tokens.dtype}")
        if prompt_tokens.min() < 0 or prompt_tokens.max() >= config.codebook_size:
            raise ValueError(f"prompt tokens must lie in [0, {config.codebook_size})")
        texts = None if descriptions is None else _check_descriptions(descriptions)
        if texts is not None and prompt_tokens.shape[0] != len(texts):
            if prompt_tokens.shape[0] != 1:
                raise ValueError(f"{prompt_tokens.shape[0]} prompts for {len(texts)} descriptions")
            prompt_tokens = prompt_tokens.expand(len(texts), -1, -1)
        return self._generate(texts, prompt_tokens.long(), duration, cfg_coef, sampling, seed, progress, extend_stride)

    def _generate(self, texts: Optional[List[str]], prompt: Optional[torch.Tensor], duration: float, cfg_coef: float,
                  sampling: SamplingParams, seed: Optional[int], progress: Progress,
                  extend_stride: Optional[float]) -> torch.Tensor:
        if not isinstance(sampling, SamplingParams):
            raise ValueError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
        num_frames = self._num_frames(duration)
        cfg: Optional[float] = check_cfg_coef(cfg_coef)
        generator = _generator(seed, self.device)
        prompt_frames = 0 if prompt is None else prompt.shape[-1]
        if prompt_frames >= num_frames:
            raise ValueError(f"the prompt ({prompt_frames / self.frame_rate:.2f} s) must be shorter than the "
                             f"requested duration ({duration:g} s)")
        windows = self._plan_windows(prompt_frames, num_frames, self._stride_frames(extend_stride))

        if texts is None:
            batch = prompt.shape[0]  # type: ignore[union-attr]
            condition = TextCondition.null(batch, self.lm.config.text_dim, self.device)
            cfg = None  # conditional and unconditional are the same model here
        else:
            batch = len(texts)
            condition = self.conditioner(texts).to(self.device)  # encoded once for every step and window
        if cfg == 1.0:
            cfg = None  # uncond + 1·(cond − uncond) is the conditional model: skip the second pass

        total = sum(self.lm.steps_to_sample(w.context + w.new, w.context) for w in windows)
        on_step, close = _progress_hook(progress, total)
        codes = prompt.to(self.device) if prompt is not None else torch.zeros(
            batch, self.lm.config.num_codebooks, 0, dtype=torch.long, device=self.device)
        try:
            for window in windows:
                context = codes[..., codes.shape[-1] - window.context:]
                new = self.lm.generate(condition, window.context + window.new, prompt=context, sampling=sampling,
                                       cfg_coef=cfg, generator=generator, on_step=on_step)
                codes = torch.cat([codes, new[..., window.context:]], dim=-1)
        finally:
            close()
        return codes

    def _num_frames(self, duration: float) -> int:
        if isinstance(duration, (np.integer, np.floating)):  # numpy scalars are numbers too
            duration = float(duration)
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
                or not 0 < duration <= MAX_DURATION:
            raise ValueError(f"duration must be a number of seconds in (0, {MAX_DURATION:g}], got {duration!r}")
        return max(1, round(duration * self.frame_rate))

    def _stride_frames(self, extend_stride: Optional[float]) -> int:
        window = self._window_frames
        if extend_stride is None:
            return max(1, window // 2)
        finite = isinstance(extend_stride, (int, float)) and math.isfinite(extend_stride)
        stride = round(extend_stride * self.frame_rate) if finite else 0
        if isinstance(extend_stride, bool) or not 0 < stride < window:
            raise ValueError(f"extend_stride must be between one frame and the context ({self.max_duration:g} s), "
                             f"got {extend_stride!r}")
        return stride

    def _plan_windows(self, prompt_frames: int, num_frames: int, stride: int) -> List[Window]:
        """Split generation into LM passes; a single pass whenever everything fits in the context."""
        window, windows, done = self._window_frames, [], prompt_frames
        if window < 1:
            raise ValueError(f"max_seq_len {self.lm.config.max_seq_len} holds no whole frame")
        while done < num_frames:
            context = done if num_frames <= window else min(done, window - stride)
            new = min(num_frames - done, window - context)
            windows.append(Window(context, new))
            done += new
        return windows


CODEC_REFERENCE = "codec.json"
# What an AudioGen Hub repo must provide; nothing else is downloaded.
AUDIOGEN_FILES = ("lm/*", "codec/*", CODEC_REFERENCE, "*.md", VOCABULARY_FILE)


def write_codec_reference(path: Path, codec: Codec) -> None:
    """Record in ``path`` which codec an LM's tokens belong to: its fingerprint (architecture and
    codebooks, as ``.grvq`` streams carry it), so a decoder-only fine-tune keeps the LM valid."""
    Path(path).write_text(json.dumps({"codec_fingerprint": codec.fingerprint().hex()}, indent=2) + "\n")


def check_codec_reference(path: Path, codec: Codec,
                          mismatch: str = "the shipped codec is not the one this language model was trained with; "
                                          "retrain the LM on its tokens, or put the right codec in a codec/ folder") -> None:
    """Raise :class:`CheckpointError` (saying ``mismatch``) unless ``codec`` is the one ``path`` refers to."""
    try:
        wanted = bytes.fromhex(json.loads(Path(path).read_text())["codec_fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is not a codec reference ({type(err).__name__}: {err})") from None
    if not codec.matches_fingerprint(wanted):
        raise CheckpointError(f"{mismatch} ({path})")


def check_target_db(target_db: Optional[float]) -> None:
    """Raise ValueError unless ``target_db`` is ``None`` or a finite level in dBFS."""
    if target_db is None:
        return
    if isinstance(target_db, bool) or not isinstance(target_db, (int, float, np.integer, np.floating)) \
            or not math.isfinite(target_db):
        raise ValueError(f"target_db must be an RMS level in dBFS or None, got {target_db!r}")


def set_level(wav: torch.Tensor, target_db: Optional[float]) -> torch.Tensor:
    """Each item of ``wav [B, 1, T]`` at ``target_db`` dBFS RMS, peak at most 0.95 (``None``: unchanged)."""
    if target_db is None:
        return wav
    return torch.stack([normalize_loudness(item, float(target_db)) for item in wav])


def _check_descriptions(descriptions: Union[str, Sequence[str]]) -> List[str]:
    """A list of non-empty descriptions (a single string is one description); an empty list is an error."""
    if isinstance(descriptions, str):
        descriptions = [descriptions]
    if not isinstance(descriptions, (list, tuple)) or not descriptions:
        raise ValueError("descriptions must be a non-empty list of strings")
    for text in descriptions:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"every description must be a non-empty string, got {text!r}")
    return list(descriptions)


def _generator(seed: Optional[int], device: torch.device) -> Optional[torch.Generator]:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


def _progress_hook(progress: Progress, total: int) -> Tuple[Optional[Callable[[], None]], Callable[[], None]]:
    """(per-step callback, closer) for ``progress`` = False, True (tqdm) or a callable ``(done, total)``."""
    if progress is True:
        bar = tqdm(total=total, unit="step", desc="generating")
        return (lambda: bar.update(1)), bar.close
    if callable(progress):
        done = 0

        def report() -> None:
            nonlocal done
            done += 1
            progress(done, total)

        return report, lambda: None
    if progress is not False and progress is not None:
        raise ValueError(f"progress must be a bool or a callable (done, total), got {progress!r}")
    return None, lambda: None
