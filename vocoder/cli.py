"""What the toolkit's command lines share: one-line argument errors, device parsing, output-path
checks made before any model runs, atomic writes, and seeded random weights.

Every CLI (``python -m vocoder``, ``python -m codec``, ``python -m generation``) ends an expected
failure with one ``error:`` line; argument errors exit with status 2, other errors with 1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NoReturn, Sequence

import soundfile as sf
import torch

from .audio import AudioError

RANDOM_INIT_SEED = 0


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (exit status 2), not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_device(name: str) -> torch.device:
    """``--device`` values: any torch device this machine has (CUDA only when available)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"device {name!r} requested but CUDA is not available")
    return device


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_output_path(path: Path, inputs: Sequence[Path] = (), audio: bool = True) -> None:
    """Fail before any work if ``path`` cannot be written: its folder is missing, it is a folder,
    it is one of the ``inputs`` (which the write would destroy), or (``audio``) libsndfile has no
    format for its extension."""
    if path.is_dir():
        raise AudioError(f"output {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise AudioError(f"output folder {path.parent} does not exist")
    for source in inputs:
        if source.exists() and (path.resolve() == source.resolve() or (path.exists() and path.samefile(source))):
            raise AudioError(f"output {path} is the input file; choose another output name")
    if audio and path.suffix.lstrip(".").upper() not in sf.available_formats():
        raise AudioError(f"cannot write audio with extension {path.suffix!r} (try .wav or .flac)")


def check_input_file(path: Path, noun: str = "audio file") -> None:
    """Fail before any model loads if ``path`` is missing or a folder."""
    if path.is_dir():
        raise AudioError(f"{path} is a directory; give the path of the {noun}")
    if not path.is_file():
        raise AudioError(f"no such {noun}: {path}")


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary_path)`` in ``path``'s folder, then rename it onto ``path``: a failed or
    interrupted run never leaves a half-written file and never touches an existing one."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def seeded(seed: int = RANDOM_INIT_SEED) -> Iterator[None]:
    """Build random-weight models reproducibly without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
