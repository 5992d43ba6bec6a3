"""Recipe configuration: YAML files plus ``key.sub=value`` command-line overrides.

A recipe config is a nested dict with the sections ``model``, ``data``, ``optim``, ``trainer`` and
any task-specific ones (``loss``, ``discriminators``...). Sections that describe a model are turned
into the model's typed dataclass config by the task module, so typos fail loudly there.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Iterable, Union

import yaml

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
    """The task's default config, merged with ``path`` (if given), the smoke preset, then overrides."""
    config = load_yaml(CONFIG_DIR / f"{task}.yaml")
    if path is not None:
        config = merge(config, load_yaml(path))
    if smoke:
        config = merge(config, load_yaml(CONFIG_DIR / f"{task}_smoke.yaml"))
    return apply_overrides(config, overrides)
