"""Saving and loading models as ``config.json`` + ``model.safetensors``, never by unpickling.

Every model of the toolkit (vocoder, codec, language model) is a typed dataclass config plus a
state dict. :class:`Pretrained` gives them one ``save_pretrained`` / ``from_pretrained`` pair, and
the one place where a Hugging Face Hub repo id (``user/name``) becomes a local folder
(:func:`resolve_pretrained`) and a folder is published to the Hub (:func:`upload_model_folder`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# The Hub shows README.md as the model card; the toolkit's own model folders call theirs MODEL_CARD.md.
CARD_NAMES = ("README.md", "MODEL_CARD.md")
# What a Pretrained model's Hub repo must provide; nothing else is downloaded.
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, "*.md")

C = TypeVar("C")


class CheckpointError(ValueError):
    """A model directory is missing, incomplete, corrupt, or does not match the config."""


def config_to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (possibly nested) dataclass config."""
    return dataclasses.asdict(config)


def coerce_value(value: Any, annotation: Any, where: str) -> Any:
    """``value`` (JSON data) as type ``annotation`` (a dataclass config, tuple, scalar ...), or a :class:`CheckpointError`."""
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
                    return coerce_value(value, arg, where)
                except CheckpointError as err:
                    errors.append(err)
        raise errors[-1]
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise CheckpointError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [coerce_value(v, inner, where) for v in value]
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
    kwargs = {k: coerce_value(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: invalid {cls.__name__}: {err}") from None


def save_state(module: nn.Module, config: Any, directory: Union[str, Path], half: bool = False,
               extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``config.json`` (with the ``extra`` entries beside ``class`` and ``config``) and
    ``model.safetensors`` (optionally float16) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[name] = tensor
    payload = {"class": type(module).__name__, "config": config_to_dict(config), **(extra or {})}
    (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n")
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def read_payload(directory: Union[str, Path]) -> Dict[str, Any]:
    """The JSON object of ``config.json`` in a model directory (with ``class`` and ``config`` entries)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} not found: not a model directory")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"{path} has no 'config' entry")
    return payload


def read_config(cls: type[C], directory: Union[str, Path], expect_class: str) -> C:
    """Parse ``config.json`` of a model directory into ``cls``."""
    payload = read_payload(directory)
    if payload.get("class") != expect_class:
        raise CheckpointError(f"{Path(directory) / CONFIG_NAME} holds a {payload.get('class')!r} model, "
                              f"expected {expect_class!r}")
    return config_from_dict(cls, payload["config"], where=str(Path(directory) / CONFIG_NAME))


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


# ------------------------------------------------------------------------------ Hugging Face Hub


def hub_repo_id(path: Union[str, os.PathLike]) -> Optional[str]:
    """``path`` as a Hugging Face Hub model id ``user/name``, or ``None`` when it cannot be one."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    name = os.fspath(path)
    if name.count("/") != 1:  # a bare name is far likelier a mistyped local folder than a Hub model
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def resolve_pretrained(path: Union[str, os.PathLike], revision: Optional[str] = None,
                       allow_patterns: Optional[Sequence[str]] = None) -> Path:
    """The local folder of a model: ``path`` itself when it exists, else the snapshot of the Hub repo
    ``path`` names (``user/name`` at ``revision``: a branch, tag or commit), found in or downloaded into
    the Hugging Face cache (only the files matching ``allow_patterns``). ``HF_HUB_OFFLINE=1`` limits
    it to the cache. A path that is neither is returned as it is, for the caller's not-found error."""
    local = Path(path)
    if local.exists():
        if revision is not None:
            raise CheckpointError(f"revision={revision!r} selects a Hub revision, but {path} is a local path")
        return local
    repo_id = hub_repo_id(path)
    if repo_id is None:
        return local
    return Path(_snapshot(repo_id, revision, allow_patterns))


def _snapshot(repo_id: str, revision: Optional[str], allow_patterns: Optional[Sequence[str]]) -> str:
    """``snapshot_download`` with its failures turned into one-line :class:`CheckpointError` s."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    name = f"{repo_id}@{revision}" if revision else repo_id
    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=offline,
                                 allow_patterns=list(allow_patterns) if allow_patterns else None)
    except LocalEntryNotFoundError as err:
        if offline:
            raise CheckpointError(f"{name} is neither a local folder nor in the Hugging Face cache "
                                  f"({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE=1 forbids downloading it") from None
        raise CheckpointError(f"{name}: the Hugging Face Hub could not be reached and the model is not in "
                              f"the cache ({constants.HF_HUB_CACHE}): {_first_line(err)}") from None
    except GatedRepoError:
        raise CheckpointError(f"{repo_id} is gated on the Hugging Face Hub: accept its terms on the Hub "
                              f"and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{repo_id} is neither a local folder nor a model on the Hugging Face Hub "
                              f"(a private one needs hf auth login)") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{repo_id} on the Hugging Face Hub has no revision {revision!r}") from None
    except (HfHubHTTPError, OSError) as err:
        raise CheckpointError(f"{name}: download from the Hugging Face Hub failed: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def find_card(folder: Path) -> Optional[Path]:
    """The model card of ``folder`` (``README.md``, else ``MODEL_CARD.md``), if it has one."""
    return next((folder / name for name in CARD_NAMES if (folder / name).is_file()), None)


def write_model_card(folder: Path, card: Optional[Union[str, Path]], model: type, repo_id: str) -> Path:
    """Put ``README.md`` into ``folder``: a copy of the markdown file ``card``, or a short card saying
    how to load ``model`` from ``repo_id``."""
    target = Path(folder) / "README.md"
    if card is not None:
        if not Path(card).is_file():
            raise CheckpointError(f"model card {card} not found")
        shutil.copyfile(card, target)
        return target
    package = model.__module__.split(".")[0]
    target.write_text(
        "---\nlibrary_name: grvq-toolkit\ntags:\n- audio\n---\n\n"
        f"# {repo_id}\n\nA `{model.__name__}` of grvq-toolkit: configs as JSON, weights as safetensors.\n\n"
        f"```python\nfrom {package} import {model.__name__}\n"
        f"model = {model.__name__}.from_pretrained(\"{repo_id}\")\n```\n")
    return target


def _folder_files(folder: Path) -> List[str]:
    """Relative POSIX paths of the files under ``folder``, hidden ones (``.git``, ``.cache``) left out."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files.append(relative.as_posix())
    return files


def upload_model_folder(folder: Union[str, Path], repo_id: str, *, revision: Optional[str] = None,
                        private: Optional[bool] = None, token: Optional[str] = None,
                        commit_message: Optional[str] = None) -> str:
    """Publish every file of ``folder`` to the Hub model repo ``repo_id`` (created if needed) in one
    commit on ``revision`` (a branch, created if needed; default main); returns the commit's URL.

    The folder must hold a model card; a ``MODEL_CARD.md`` is also uploaded as ``README.md``, the
    name the Hub shows. Callers check the model files first (:meth:`Pretrained.push_folder_to_hub`)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    folder = Path(folder)
    if hub_repo_id(repo_id) is None:
        raise CheckpointError(f"{repo_id!r} is not a Hugging Face Hub model id (user/name)")
    card = find_card(folder)
    if card is None:
        raise CheckpointError(f"{folder} has no model card ({' or '.join(CARD_NAMES)})")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
                  for name in _folder_files(folder)]
    if card.name != "README.md":
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card)))
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(repo_id, operations, revision=revision,
                                   commit_message=commit_message or f"Upload {folder.name}")
    except OfflineModeIsEnabled:
        raise CheckpointError(f"HF_HUB_OFFLINE=1 forbids publishing {repo_id} to the Hugging Face Hub") from None
    return commit.commit_url


class Pretrained:
    """Mixin for ``nn.Module`` models with a dataclass ``config`` attribute.

    Subclasses set ``config_class`` and ``default_pretrained`` (the shipped model's directory).
    """

    config_class: ClassVar[type]
    default_pretrained: ClassVar[Optional[Path]] = None
    # Config fields (dotted paths) that steer training or memory use but leave the weights' meaning
    # alone: a warm start (``load_weights_from``) may change them, e.g. a codec's dead-code threshold.
    training_fields: ClassVar[Tuple[str, ...]] = ()
    # Optional files a saved folder may hold beside the weights (fetched from the Hub with them); the
    # model reads them in :meth:`load_companions`.
    companion_files: ClassVar[Tuple[str, ...]] = ()

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
    def from_pretrained(cls, path: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu",
                        *, revision: Optional[str] = None):
        """Load a saved model from a local folder or a Hugging Face Hub repo id ``user/name`` (at
        ``revision``, through the Hub's cache; ``HF_HUB_OFFLINE=1``: the cache only). A local folder
        that exists wins over a repo id of the same name. ``path=None`` loads the shipped model."""
        if path is None:
            path = cls.default_pretrained
            if path is None or not (Path(path) / WEIGHTS_NAME).is_file():
                raise CheckpointError(
                    f"no shipped {cls.__name__} model found at {path}; train one with the recipes "
                    f"and pass its directory"
                )
        directory = resolve_pretrained(path, revision, MODEL_FILES + cls.companion_files)
        if not directory.is_dir():
            raise CheckpointError(f"{path} is not a directory")
        model = cls.build_saved(directory)
        load_state(model, directory)  # type: ignore[arg-type]
        model.load_companions(directory)
        return model.to(device).eval()  # type: ignore[attr-defined]

    def load_companions(self, directory: Path) -> None:
        """Read the :attr:`companion_files` present in ``directory`` (after the weights): none by default."""

    @classmethod
    def build_saved(cls, directory: Path):
        """A model with the architecture ``config.json`` of ``directory`` names (weights not loaded yet)."""
        return cls(read_config(cls.config_class, directory, cls.__name__))  # type: ignore[call-arg]

    def push_to_hub(self, repo_id: str, card: Optional[Union[str, Path]] = None, *, revision: Optional[str] = None,
                    private: Optional[bool] = None, token: Optional[str] = None,
                    commit_message: Optional[str] = None, half: bool = False) -> str:
        """Publish this model to the Hugging Face Hub repo ``repo_id`` as ``config.json`` +
        ``model.safetensors`` + ``README.md`` (a copy of the markdown file ``card``, or a short card
        saying how to load it); returns the commit's URL. See :func:`upload_model_folder`."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp), half=half)
            write_model_card(folder, card, type(self), repo_id)
            return upload_model_folder(folder, repo_id, revision=revision, private=private, token=token,
                                       commit_message=commit_message or f"Upload {type(self).__name__}")

    @classmethod
    def push_folder_to_hub(cls, folder: Union[str, Path], repo_id: str, *, revision: Optional[str] = None,
                           private: Optional[bool] = None, token: Optional[str] = None,
                           commit_message: Optional[str] = None) -> str:
        """Publish a saved model folder as it is (its model card, ``MODEL_CARD.md`` or ``README.md``,
        and every other file) once it passes :meth:`from_pretrained`'s checks; returns the commit's URL."""
        return push_checked_folder(cls.from_pretrained, folder, repo_id, revision=revision, private=private,
                                   token=token, commit_message=commit_message)


def push_checked_folder(load: Callable[[Path], Any], folder: Union[str, Path], repo_id: str, **upload: Any) -> str:
    """Upload ``folder`` to ``repo_id`` (see :func:`upload_model_folder`) once ``load(folder)``
    accepts it, so that nothing a loader would refuse is ever published."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a directory")
    load(folder)
    return upload_model_folder(folder, repo_id, **upload)


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
