"""The demo's one temporary folder: everything the server writes, and everything it serves, is in it."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional


class Workspace:
    """A private temporary folder with two parts.

    ``gradio/`` becomes Gradio's upload and cache folder (``GRADIO_TEMP_DIR``), the only place
    Gradio serves files from; ``outputs/`` holds the files the handlers write (WAV, ``.grvq``),
    which Gradio copies into its cache when it returns them. Outputs older than ``max_age_s`` are
    deleted whenever a new one is written, so a long-running server does not fill its disk.
    Without ``root`` a fresh folder is made, and deleted when the process exits.
    """

    def __init__(self, root: Optional[Path] = None, max_age_s: float = 3600.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="grvq-demo-") if root is None else root).resolve()
        if root is None:
            atexit.register(self.cleanup)
        self.outputs = self.root / "outputs"
        self.gradio_cache = self.root / "gradio"
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.gradio_cache.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def new_file(self, stem: str, suffix: str) -> Path:
        """A fresh path ``outputs/<stem>-<random><suffix>`` (the random part keeps sessions apart)."""
        self._prune()
        return self.outputs / f"{stem}-{uuid.uuid4().hex[:8]}{suffix}"

    def _prune(self) -> None:
        cutoff = time.time() - self.max_age_s
        for path in self.outputs.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:  # another request pruned it first
                pass

    def cleanup(self) -> None:
        """Delete the whole folder."""
        shutil.rmtree(self.root, ignore_errors=True)
