"""Gradio demo: text to audio, audio continuation and codec round trips in the browser.

Run it with ``python -m demo``; build the page in code with :func:`build_app`.
"""

from .app import build_app, launch
from .handlers import CodecResult, DemoHandlers, DemoLimits, GenerationResult
from .models import DemoModels, load_models
from .workspace import Workspace

__all__ = [
    "CodecResult",
    "DemoHandlers",
    "DemoLimits",
    "DemoModels",
    "GenerationResult",
    "Workspace",
    "build_app",
    "launch",
    "load_models",
]
