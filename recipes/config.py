"""Recipe configuration: YAML files plus ``key.sub=value`` command-line overrides.

A recipe config is a nested dict with the sections ``model``, ``data``, ``optim``, ``trainer``,
``export`` and the task-specific ones (``loss``, ``discriminators``). Every section is checked
against a dataclass below (the model sections against the models' own configs, by the task
modules), so a misspelt key, a wrong type or an impossible value fails before training starts.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import yaml

from .augment import AugmentConfig

CONFIG_DIR = Path(__file__).parent / "configs"


class RecipeConfigError(ValueError):
    """A recipe config file or override is malformed."""


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping document is an error."""
    path = Path(path)
    if not path.is_file():
        raise RecipeConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise RecipeConfigError(f"{path} must hold a mapping at the top level")
    return data


def merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(config: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply ``section.key=value`` overrides; values are parsed as YAML (``1e-4``, ``[1, 2]``, ``true``)."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise RecipeConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise RecipeConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string; users mean a number
            try:
                value = float(value)
            except ValueError:
                pass
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise RecipeConfigError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return config


def load_recipe_config(task: str, path: Union[str, Path, None] = None, overrides: Iterable[str] = (),
                       smoke: bool = False) -> Dict[str, Any]:
    """The task's default config, merged with ``path`` (if given), the smoke preset (and its
    ``model_by_kind`` entry for the model's ``kind``), then overrides."""
    config = load_yaml(CONFIG_DIR / f"{task}.yaml")
    if path is not None:
        config = merge(config, load_yaml(path))
    if smoke:
        preset = load_yaml(CONFIG_DIR / f"{task}_smoke.yaml")
        by_kind = preset.pop("model_by_kind", None)  # the codec designs' configs have different fields
        config = merge(config, preset)
        if by_kind:
            from codec.config import DEFAULT_KIND
            kind = (config.get("model") or {}).get("kind", DEFAULT_KIND)
            config = merge(config, {"model": by_kind.get(kind) or {}})
    return validate_recipe_config(task, apply_overrides(config, overrides))


# ------------------------------------------------------------------------------ typed sections
# Every section of a recipe config is one of these dataclasses (``model``, ``loss`` and
# ``discriminators`` are the models' own configs, checked by the task modules), so a misspelt key,
# a wrong type or an impossible value is one error line before any model is built, and every
# default lives here once.


def _positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ValueError(f"{where}.{name} must be positive, got {value}")


@dataclass
class AudioDataConfig:
    """``data`` of the codec and vocoder recipes (see :class:`recipes.audio_module.AudioDataModule`)."""

    manifest: str = "data/corpus/manifest.jsonl"
    segment_seconds: float = 1.0
    valid_segment_seconds: float = 3.0
    batch_size: int = 8
    valid_batch_size: int = 4
    num_workers: int = 0
    speech: bool = False  # also report PESQ and STOI
    exclude: List[str] = field(default_factory=list)
    valid_manifest: Optional[str] = None
    valid_split: Optional[str] = "valid"
    valid_include: Optional[List[str]] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training crops only

    def __post_init__(self) -> None:
        _positive("data", segment_seconds=self.segment_seconds, valid_segment_seconds=self.valid_segment_seconds,
                  batch_size=self.batch_size, valid_batch_size=self.valid_batch_size)
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class TokenDataConfig:
    """``data`` of the language-model recipe."""

    tokens: str = "data/tokens"  # written by python -m recipes.extract_tokens
    codec: Optional[str] = "runs/codec/best"  # copied beside the LM at export
    batch_size: int = 16
    min_frames: int = 25
    max_frames: Optional[int] = None  # default: the longest crop that fits the model's context
    num_workers: int = 0
    # Length buckets of Lhotse's DynamicBucketingSampler: a batch is cropped to its shortest item.
    num_buckets: int = 30

    def __post_init__(self) -> None:
        _positive("data", batch_size=self.batch_size, min_frames=self.min_frames, max_frames=self.max_frames,
                  num_buckets=self.num_buckets)
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class GanOptimConfig:
    """``optim`` of the codec and vocoder recipes: AdamW for generator and discriminators."""

    lr: float = 2e-4
    betas: Tuple[float, float] = (0.8, 0.99)
    lr_decay: float = 0.99999  # per batch, exponential
    # Cheap reconstruction losses first: the discriminators join at this batch (see the YAML).
    adversarial_start_step: int = 5000
    grad_clip: float = 1000.0
    # Generator parts kept fixed, by attribute name: [encoder, quantizer] fine-tunes a codec's
    # decoder while its codes keep their meaning (its fingerprint, and the LMs trained on it, stay valid).
    frozen: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _positive("optim", lr=self.lr, lr_decay=self.lr_decay, grad_clip=self.grad_clip)
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must lie in [0, 1), got {self.betas}")
        if self.adversarial_start_step < 0:
            raise ValueError("optim.adversarial_start_step must be >= 0")


@dataclass
class LMOptimConfig:
    """``optim`` of the language-model recipe: AdamW, linear warm-up then inverse square root, and
    an optional linear cool-down to zero (see :func:`recipes.lm_module.learning_rate_factor`)."""

    lr: float = 5e-4
    betas: Tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 500
    # Warmup-stable-decay ending: from step cooldown_start the rate falls linearly to zero over
    # cooldown_steps, and the run ends there. Resume a copy of a run with these set; the run it was
    # copied from stays the one to continue later (a cooled-down model learns little more).
    cooldown_start: Optional[int] = None
    cooldown_steps: int = 1000

    def __post_init__(self) -> None:
        _positive("optim", lr=self.lr, warmup_steps=self.warmup_steps, cooldown_steps=self.cooldown_steps)
        if not all(0 <= b < 1 for b in self.betas) or self.weight_decay < 0:
            raise ValueError("optim.betas must lie in [0, 1) and optim.weight_decay be >= 0")
        if self.cooldown_start is not None and self.cooldown_start < 0:
            raise ValueError("optim.cooldown_start must be >= 0")


@dataclass
class TrainerConfig:
    """``trainer``: Lightning Trainer arguments the recipes use, plus checkpoint and progress settings.

    Steps count batches for every task (a GAN batch is one step although it runs two optimizers).
    """

    max_steps: int = 200_000
    max_time: Optional[str] = None
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    strategy: Optional[str] = None
    num_nodes: int = 1
    precision: str = "32-true"
    gradient_clip_val: Optional[float] = None
    val_check_interval: int = 1000
    check_val_every_n_epoch: Optional[int] = None
    limit_val_batches: int = 8
    log_every_n_steps: int = 25
    checkpoint_every_n_steps: int = 500
    progress_refresh_rate: int = 10
    enable_model_summary: bool = True

    def __post_init__(self) -> None:
        _positive("trainer", max_steps=self.max_steps, num_nodes=self.num_nodes,
                  val_check_interval=self.val_check_interval, limit_val_batches=self.limit_val_batches,
                  log_every_n_steps=self.log_every_n_steps, checkpoint_every_n_steps=self.checkpoint_every_n_steps,
                  progress_refresh_rate=self.progress_refresh_rate)
        if isinstance(self.devices, int) and self.devices < 1:
            raise ValueError(f"trainer.devices must be >= 1 or 'auto', got {self.devices}")


@dataclass
class ExportConfig:
    """``export``: how the best weights are saved."""

    half: bool = False  # fp16 safetensors (half the size; loads into float32 models)


@dataclass
class RecipeConfig:
    """A whole recipe config. ``model``/``loss``/``discriminators`` stay dicts here: the task turns
    them into the models' own dataclass configs."""

    data: Any
    optim: Any
    seed: int = 0
    output: Optional[str] = None
    model: Dict[str, Any] = field(default_factory=dict)
    loss: Dict[str, Any] = field(default_factory=dict)
    discriminators: Dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    init: Optional[str] = None  # a saved model directory to start from when there is no run to resume
    vocoder: Optional[str] = None  # spectral codec: a trained vocoder directory loaded into the codec


SECTIONS = {"codec": (AudioDataConfig, GanOptimConfig), "vocoder": (AudioDataConfig, GanOptimConfig),
            "lm": (TokenDataConfig, LMOptimConfig)}


def validate_recipe_config(task: str, config: Dict[str, Any]) -> Dict[str, Any]:
    """Check every section against its dataclass and return the config with all defaults filled in
    (plain dicts, as the task modules read it); raises :class:`RecipeConfigError` with one line."""
    from vocoder.checkpoint import config_from_dict

    if task not in SECTIONS:
        raise RecipeConfigError(f"unknown task {task!r}; choose from {sorted(SECTIONS)}")
    data_class, optim_class = SECTIONS[task]
    known = {f.name for f in fields(RecipeConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise RecipeConfigError(f"unknown config section(s) {unknown}; known: {sorted(known)}")
    if task != "codec" and config.get("vocoder") is not None:
        raise RecipeConfigError("'vocoder' applies to the codec recipe only")
    try:
        checked = {
            "data": config_from_dict(data_class, config.get("data") or {}, "data"),
            "optim": config_from_dict(optim_class, config.get("optim") or {}, "optim"),
            "trainer": config_from_dict(TrainerConfig, config.get("trainer") or {}, "trainer"),
            "export": config_from_dict(ExportConfig, config.get("export") or {}, "export"),
        }
        rest = {k: v for k, v in config.items() if k not in checked}
        whole = config_from_dict(RecipeConfig, {**rest, "data": {}, "optim": {}}, "config")
    except ValueError as err:
        raise RecipeConfigError(str(err)) from None
    out = asdict(whole)
    out.update({name: asdict(section) for name, section in checked.items()})
    cooldown_start = out["optim"].get("cooldown_start")
    if cooldown_start is not None:  # nothing is learnt at a zero rate: the run ends with its cool-down
        end = cooldown_start + out["optim"]["cooldown_steps"]
        out["trainer"]["max_steps"] = min(out["trainer"]["max_steps"], end)
    return out
