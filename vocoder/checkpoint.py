"""Saving and loading models as ``config.json`` + ``model.safetensors``, never by unpickling.

Every model of the toolkit (vocoder, codec, language model) is a typed dataclass config plus a
state dict. :class:`Pretrained` gives them one ``save_pretrained`` / ``from_pretrained`` pair.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Tuple, TypeVar, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

C = TypeVar("C")


class CheckpointError(ValueError):
    """A model directory is missing, incomplete, corrupt, or does not match the config."""


def config_to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (possibly nested) dataclass config."""
    return dataclasses.asdict(config)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return config_from_dict(annotation, value, where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is not type(None):
                try:
                    return _coerce(value, arg, where)
                except CheckpointError as err:
                    errors.append(err)
        raise errors[-1]
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise CheckpointError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict and not isinstance(value, dict):
        raise CheckpointError(f"{where}: expected a mapping, got {value!r}")
    if annotation is bool and not isinstance(value, bool):
        raise CheckpointError(f"{where}: expected true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        if not (isinstance(value, float) and value.is_integer()):
            raise CheckpointError(f"{where}: expected an integer, got {value!r}")
        value = int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CheckpointError(f"{where}: expected a number, got {value!r}")
        value = float(value)
    if annotation is str and not isinstance(value, str):
        raise CheckpointError(f"{where}: expected a string, got {value!r}")
    return value


def config_from_dict(cls: type[C], data: dict, where: str = "config") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error (they signal a mismatch)."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a JSON object for {cls.__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(f"{where}: unknown {cls.__name__} fields {unknown}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: invalid {cls.__name__}: {err}") from None


def save_state(module: nn.Module, config: Any, directory: Union[str, Path], half: bool = False) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (optionally float16) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[name] = tensor
    payload = {"class": type(module).__name__, "config": config_to_dict(config)}
    (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n")
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def read_config(cls: type[C], directory: Union[str, Path], expect_class: str) -> C:
    """Parse ``config.json`` of a model directory into ``cls``."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} not found: not a model directory")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"{path} has no 'config' entry")
    if payload.get("class") != expect_class:
        raise CheckpointError(f"{path} holds a {payload.get('class')!r} model, expected {expect_class!r}")
    return config_from_dict(cls, payload["config"], where=str(path))


def load_state(module: nn.Module, directory: Union[str, Path]) -> nn.Module:
    """Load ``model.safetensors`` into ``module`` strictly, casting to the module's dtypes."""
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a valid safetensors file: {err}") from None
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: {name} contains NaN or infinite values")
        state[name] = tensor.to(expected[name].dtype)
    module.load_state_dict(state, strict=True)
    return module


class Pretrained:
    """Mixin for ``nn.Module`` models with a dataclass ``config`` attribute.

    Subclasses set ``config_class`` and ``default_pretrained`` (the shipped model's directory).
    """

    config_class: ClassVar[type]
    default_pretrained: ClassVar[Optional[Path]] = None
    # Config fields (dotted paths) that steer training or memory use but leave the weights' meaning
    # alone: a warm start (``load_weights_from``) may change them, e.g. a codec's dead-code threshold.
    training_fields: ClassVar[Tuple[str, ...]] = ()

    @property
    def device(self) -> torch.device:
        """The device the model's parameters live on."""
        return next(self.parameters()).device  # type: ignore[attr-defined]

    def save_pretrained(self, directory: Union[str, Path], half: bool = False) -> Path:
        """Save ``config.json`` + ``model.safetensors`` into ``directory``."""
        return save_state(self, self.config, directory, half=half)  # type: ignore[arg-type]

    def load_weights_from(self, directory: Union[str, Path]) -> None:
        """Copy the weights of a saved model of the same architecture into this one (warm start).

        The configs must agree except in ``training_fields``; the error names the fields that differ."""
        saved = read_config(self.config_class, directory, type(self).__name__)
        differing = differing_fields(saved, self.config, self.training_fields)  # type: ignore[attr-defined]
        if differing:
            raise CheckpointError(f"{directory} holds a model of another configuration than this one "
                                  f"(differs in {', '.join(differing)})")
        load_state(self, directory)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(cls, path: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu"):
        """Load a saved model; ``path=None`` loads the model shipped with the toolkit."""
        if path is None:
            path = cls.default_pretrained
            if path is None or not (Path(path) / WEIGHTS_NAME).is_file():
                raise CheckpointError(
                    f"no shipped {cls.__name__} model found at {path}; train one with the recipes "
                    f"and pass its directory"
                )
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path} is not a directory")
        config = read_config(cls.config_class, path, cls.__name__)
        model = cls(config)  # type: ignore[call-arg]
        load_state(model, path)  # type: ignore[arg-type]
        return model.to(device).eval()  # type: ignore[attr-defined]


def differing_fields(first: Any, second: Any, ignored: Tuple[str, ...] = ()) -> List[str]:
    """Dotted names of the fields in which two configs (dataclasses or their dicts) differ, leaving
    out the ``ignored`` fields and sub-configs (a model's ``training_fields``)."""
    a, b = _flatten(first, ignored), _flatten(second, ignored)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _flatten(config: Any, ignored: Tuple[str, ...]) -> Dict[str, Any]:
    """``config`` flattened to dotted keys, without the ``ignored`` fields (or sub-configs)."""
    flat: Dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if prefix in ignored:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else key)
        else:
            flat[prefix] = value

    walk(config if isinstance(config, dict) else config_to_dict(config), "")
    return flat
