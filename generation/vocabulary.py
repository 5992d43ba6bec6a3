"""What a text-to-audio model was trained on: its captions and target classes, and how near a prompt is.

A model folder may hold ``vocabulary.json`` beside ``lm/``: the captions of its training recordings
with how many recordings each had, and how many recordings each everyday target class had (ESC-50's
50 classes plus speech and music; the recipes build the file from the training manifest). A folder
without it has an unknown vocabulary; a malformed one is an error.

A prompt's nearest trained sounds are found with the model's own text encoder: each text's token
states are mean-pooled into one unit vector (as sentence-transformers does for MiniLM) and compared by
cosine similarity. Only captions with at least :data:`MIN_RECORDINGS` recordings count as learned: the
model card shows kinds with one or two recordings (a dog, a cow) are not.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from vocoder.checkpoint import CheckpointError

from .conditioners import TextConditioner

VOCABULARY_FILE = "vocabulary.json"
VOCABULARY_FORMAT = "grvq-audiogen-vocabulary"
VOCABULARY_VERSION = 1
# What the counts count: recordings (from a manifest), or clips (a token folder's items, which may be
# several segments of one recording).
COUNTED = ("recordings", "clips")
# A caption needs this many training recordings to count as learned (the coverage rule's count).
MIN_RECORDINGS = 5
# Below this cosine similarity a prompt is far from every learned caption: the threshold that misjudged
# the fewest prompts (generation model card, "What it knows").
FAR_SIMILARITY = 0.65


@dataclass(frozen=True)
class Vocabulary:
    """Training captions -> recordings (most first), and target class -> recordings."""

    captions: Dict[str, int]
    classes: Dict[str, int] = field(default_factory=dict)
    counted: str = "recordings"
    splits: Tuple[str, ...] = ("train",)
    sources: Tuple[str, ...] = ()

    def learned(self, min_recordings: int = MIN_RECORDINGS) -> List[str]:
        """Captions with at least ``min_recordings`` recordings, most recordings first."""
        return [caption for caption, count in self.captions.items() if count >= min_recordings]

    def to_json(self) -> Dict[str, Any]:
        return {"format": VOCABULARY_FORMAT, "version": VOCABULARY_VERSION, "counted": self.counted,
                "splits": list(self.splits), "sources": list(self.sources),
                "captions": dict(sorted(self.captions.items(), key=lambda item: (-item[1], item[0]))),
                "classes": dict(self.classes)}

    @classmethod
    def from_json(cls, data: Any, where: str = VOCABULARY_FILE) -> "Vocabulary":
        """Validate a decoded ``vocabulary.json``; raises :class:`CheckpointError` naming ``where``."""
        def fail(reason: str) -> CheckpointError:
            return CheckpointError(f"{where} is not a vocabulary file: {reason}")

        if not isinstance(data, dict) or data.get("format") != VOCABULARY_FORMAT:
            raise fail(f"expected a JSON object with \"format\": \"{VOCABULARY_FORMAT}\"")
        if data.get("version") != VOCABULARY_VERSION:
            raise fail(f"version {data.get('version')!r}, this library reads version {VOCABULARY_VERSION}")
        if data.get("counted") not in COUNTED:
            raise fail(f"\"counted\" must be one of {COUNTED}")
        for key in ("captions", "classes"):
            table = data.get(key)
            if not isinstance(table, dict) or not all(
                    isinstance(name, str) and name.strip() and type(count) is int and count >= 0
                    for name, count in table.items()):
                raise fail(f"\"{key}\" must map non-empty names to recording counts")
        for key in ("splits", "sources"):
            if not isinstance(data.get(key), list) or not all(isinstance(item, str) for item in data[key]):
                raise fail(f"\"{key}\" must be a list of names")
        return cls(dict(data["captions"]), dict(data["classes"]), data["counted"],
                   tuple(data["splits"]), tuple(data["sources"]))


def read_vocabulary(path: Union[str, Path]) -> Optional[Vocabulary]:
    """The vocabulary in ``path``, or None when there is no such file (an unknown vocabulary)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a vocabulary file: {err}") from None
    return Vocabulary.from_json(data, str(path))


def write_vocabulary(path: Union[str, Path], vocabulary: Vocabulary) -> None:
    """Write ``vocabulary`` as ``vocabulary.json`` JSON (captions most recordings first)."""
    Path(path).write_text(json.dumps(vocabulary.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


@torch.no_grad()
def sentence_embeddings(conditioner: TextConditioner, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """``[N, D]`` unit vectors: each text's token states mean-pooled over its real tokens."""
    rows = []
    for start in range(0, len(texts), batch_size):
        condition = conditioner(list(texts[start:start + batch_size]))
        mask = condition.mask.unsqueeze(-1).float()
        pooled = (condition.states.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        rows.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, conditioner.output_dim)


@dataclass(frozen=True)
class KnownSound:
    """A training caption, its cosine similarity to a prompt, and how many recordings it had."""

    caption: str
    similarity: float
    recordings: int


@dataclass(frozen=True)
class NearestSounds:
    """A prompt's nearest learned captions (most similar first); ``far`` when even the nearest is
    below ``threshold``: the model learned nothing like it and will answer with the nearest kind it knows."""

    prompt: str
    sounds: Tuple[KnownSound, ...]
    threshold: float

    @property
    def far(self) -> bool:
        return not self.sounds or self.sounds[0].similarity < self.threshold


class SoundIndex:
    """A vocabulary's learned captions embedded once by a text encoder, for nearest-caption lookups."""

    def __init__(self, vocabulary: Vocabulary, conditioner: TextConditioner,
                 min_recordings: int = MIN_RECORDINGS) -> None:
        self.vocabulary = vocabulary
        self.conditioner = conditioner
        self.captions = vocabulary.learned(min_recordings)
        self._embeddings: Optional[torch.Tensor] = None
        self._lock = threading.Lock()

    @property
    def embeddings(self) -> torch.Tensor:
        with self._lock:  # the demo may look up from two threads; embed the captions only once
            if self._embeddings is None:
                self._embeddings = sentence_embeddings(self.conditioner, self.captions)
            return self._embeddings

    def nearest(self, prompt: str, k: int = 5, threshold: float = FAR_SIMILARITY) -> NearestSounds:
        """The ``k`` learned captions most similar to ``prompt``."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt must be a non-empty string")
        if type(k) is not int or k < 1:
            raise ValueError(f"k must be a positive whole number, got {k!r}")
        if not self.captions:
            return NearestSounds(prompt, (), threshold)
        similarity = self.embeddings @ sentence_embeddings(self.conditioner, [prompt.strip()])[0]
        top = torch.topk(similarity, min(k, len(self.captions)))
        sounds = tuple(KnownSound(self.captions[i], round(float(s), 4), self.vocabulary.captions[self.captions[i]])
                       for s, i in zip(top.values.tolist(), top.indices.tolist()))
        return NearestSounds(prompt, sounds, threshold)
