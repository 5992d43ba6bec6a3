"""The Gradio page: three tabs (text to audio, continuation, codec) over :class:`DemoHandlers`.

``build_app(models)`` only lays out the page; :func:`launch` serves it with the limits that keep
a shared server alive (upload size, a bounded queue, one private temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass
from typing import Optional

import gradio as gr

from codec import SpectralCodec
from generation.sampling import DEFAULT_CFG_COEF, DEFAULT_SAMPLING

from .handlers import MAX_SEED, DemoHandlers, DemoLimits
from .models import DemoModels
from .workspace import Workspace

# Captions the shipped model trained on (5 or more recordings), from what it serves best where the report
# measured it (reports/generation): 6 to 8 of 8 clips nearest their own caption at guidance 3, and for the
# everyday classes 12 or more of 16 against recordings of sources it never heard.
EXAMPLE_PROMPTS = [
    "swords clashing",
    "a fire crackling",
    "a bird singing",
    "a person laughing",
    "footsteps",
    "a tom drum hit",
    "a night ambience with crickets",
    "a person speaking English",
]
# Real recordings, held out from training, to continue (attributions in examples/README.md).
EXAMPLE_RECORDINGS = sorted(str(path) for path in (Path(__file__).parent / "examples").glob("*.flac"))

# System fonts only: the default theme fetches Google Fonts, which an offline server cannot reach.
_THEME = gr.themes.Default(
    primary_hue="indigo",
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "monospace"],
)


@dataclass
class SamplingControls:
    """The sampling widgets shared by the two generation tabs, in the handlers' argument order."""

    duration: gr.Slider
    cfg_coef: gr.Slider
    temperature: gr.Slider
    top_k: gr.Slider
    top_p: gr.Slider
    seed: gr.Number
    random_seed: gr.Checkbox

    def inputs(self) -> list:
        return [self.duration, self.cfg_coef, self.temperature, self.top_k, self.top_p, self.seed, self.random_seed]


def _sampling_controls(models: DemoModels, limits: DemoLimits, duration_label: str,
                       duration_range: tuple[float, float], prefix: str) -> SamplingControls:
    duration = gr.Slider(*duration_range, value=min(5.0, duration_range[1]), step=0.5, label=duration_label,
                         elem_id=f"{prefix}-duration")
    with gr.Accordion("Sampling settings", open=False):
        cfg_coef = gr.Slider(0.0, limits.max_guidance, value=DEFAULT_CFG_COEF, step=0.5, label="Guidance scale",
                             info="How closely to follow the text (1 = no classifier-free guidance)")
        temperature = gr.Slider(0.0, limits.max_temperature, value=DEFAULT_SAMPLING.temperature, step=0.05, label="Temperature",
                                info="0 = always the most likely token")
        top_k = gr.Slider(0, models.generator.codec.codebook_size, value=min(DEFAULT_SAMPLING.top_k, models.generator.codec.codebook_size),
                          step=1, label="Top-k", info="0 = off")
        top_p = gr.Slider(0.0, 1.0, value=DEFAULT_SAMPLING.top_p, step=0.05, label="Top-p", info="0 = off")
        with gr.Row():
            seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                             info="Shows the seed used after each run")
            random_seed = gr.Checkbox(value=True, label="Random seed")
    return SamplingControls(duration, cfg_coef, temperature, top_k, top_p, seed, random_seed)


def _generation_outputs(audio_label: str, prefix: str) -> list:
    audio = gr.Audio(label=audio_label, type="filepath", interactive=False, elem_id=f"{prefix}-audio")
    picture = gr.Image(label="Log-mel spectrogram", type="numpy", format="png", interactive=False,
                       elem_id=f"{prefix}-spectrogram")
    summary = gr.Markdown(elem_id=f"{prefix}-summary")
    return [audio, picture, summary]


def _buttons(action: str, prefix: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(action, variant="primary", elem_id=f"{prefix}-run")
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop")
    return run, stop


def build_app(models: DemoModels, limits: Optional[DemoLimits] = None,
              workspace: Optional[Workspace] = None) -> gr.Blocks:
    """Lay out the demo page for ``models`` (queue configured; call :func:`launch` to serve it).

    Gradio reads its upload/cache folder from ``GRADIO_TEMP_DIR`` when components are created and
    again while serving requests (its upload checks call ``gradio.utils.get_upload_folder()``), so
    the variable is set for the process, not just while the page is built: uploads and served
    files all stay in ``workspace``. One demo app per process is the supported use.
    """
    limits = limits or DemoLimits()
    workspace = workspace or Workspace()
    os.environ["GRADIO_TEMP_DIR"] = str(workspace.gradio_cache)
    handlers = DemoHandlers(models, limits, workspace)
    audio_sources = ["upload", "microphone"]
    # The three model events share one concurrency group: the limit holds for the server, not per tab.
    heavy = dict(concurrency_id="models", concurrency_limit=limits.concurrency)

    with gr.Blocks(title="GRVQ toolkit demo", analytics_enabled=False, delete_cache=(1800, 3600)) as app:
        gr.Markdown("# GRVQ toolkit demo\nText-to-audio generation, audio continuation and a neural codec.")
        gr.Markdown(models.describe(), elem_id="model-info")

        with gr.Tab("Text to audio"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Describe the sound", lines=2, max_length=limits.max_text_chars,
                                      placeholder="e.g. rain falling", elem_id="tta-text")
                    gr.Examples(EXAMPLE_PROMPTS, inputs=[text], label="Example prompts")
                    known = gr.Markdown(elem_id="tta-known")
                    controls = _sampling_controls(models, limits, "Duration (s)",
                                                  (limits.min_generation_seconds, limits.max_generation_seconds), "tta")
                    run, stop = _buttons("Generate", "tta")
                with gr.Column():
                    outputs = _generation_outputs("Generated audio", "tta")
            event = run.click(handlers.generate, inputs=[text, *controls.inputs()], outputs=[*outputs, controls.seed],
                              **heavy)
            stop.click(handlers.stop, cancels=[event], queue=False)
            # Cheap (one sentence through the text encoder): shown while typing, outside the model queue.
            text.change(handlers.known_sounds_note, inputs=[text], outputs=[known], queue=False,
                        show_progress="hidden", trigger_mode="always_last")

        with gr.Tab("Continuation"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Audio(sources=audio_sources, type="filepath", elem_id="cont-prompt",
                                      label=f"Audio prompt (up to {limits.max_prompt_seconds:g} s)")
                    gr.Examples([[path] for path in EXAMPLE_RECORDINGS], inputs=[prompt], label="Example recordings")
                    cont_text = gr.Textbox(label="Description (optional)", lines=1, max_length=limits.max_text_chars)
                    cont_controls = _sampling_controls(
                        models, limits, "Total duration, prompt included (s)",
                        (1.0, limits.max_prompt_seconds + limits.max_generation_seconds), "cont")
                    run, stop = _buttons("Continue", "cont")
                with gr.Column():
                    cont_outputs = _generation_outputs("Prompt + continuation", "cont")
            event = run.click(handlers.continue_audio, inputs=[prompt, cont_text, *cont_controls.inputs()],
                              outputs=[*cont_outputs, cont_controls.seed], **heavy)
            stop.click(handlers.stop, cancels=[event], queue=False)

        with gr.Tab("Codec"):
            codec = models.codec
            choices = [(f"{codec.bitrate_for(k) / 1000:g} kbit/s ({k} codebooks)", k)
                       for k in models.codebook_choices()]
            with gr.Row():
                with gr.Column():
                    upload_limits = f"up to {limits.max_upload_seconds:g} s, {limits.max_upload_mb:g} MB"
                    source = gr.Audio(sources=audio_sources, type="filepath", elem_id="codec-input",
                                      label=f"Audio ({upload_limits})")
                    bitrate = gr.Dropdown(choices, value=choices[-1][1], label="Bitrate", elem_id="codec-bitrate")
                    quality = gr.Radio(["default", "best"], value="default", elem_id="codec-quality",
                                       label="Decoding quality (best: more phase refinement, slower)",
                                       visible=isinstance(codec, SpectralCodec))
                    roundtrip = gr.Button("Compress and decode", variant="primary", elem_id="codec-run")
                with gr.Column():
                    reconstruction = gr.Audio(label="Decoded from the .grvq stream", type="filepath",
                                              interactive=False, elem_id="codec-audio")
                    codec_summary = gr.Markdown(elem_id="codec-summary")
                    stream = gr.File(label=".grvq stream", interactive=False, elem_id="codec-stream")
            with gr.Row():
                original_picture = gr.Image(label="Original (log-mel)", type="numpy", format="png", interactive=False)
                decoded_picture = gr.Image(label="Decoded (log-mel)", type="numpy", format="png", interactive=False)
            roundtrip.click(handlers.codec_roundtrip, inputs=[source, bitrate, quality],
                            outputs=[reconstruction, original_picture, decoded_picture, codec_summary, stream], **heavy)

    app.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    return app


def launch(app: gr.Blocks, limits: Optional[DemoLimits] = None, host: str = "127.0.0.1", port: int = 7860,
           block: bool = True) -> None:
    """Serve ``app``: uploads above the size limit are refused before they reach a handler, and
    no extra folders are served (``allowed_paths=[]``). ``block=False`` returns once it is up."""
    limits = limits or DemoLimits()
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=int(limits.max_upload_mb * 1e6),
        allowed_paths=[],
        ssr_mode=False,
        theme=_THEME,
        prevent_thread_lock=not block,
        quiet=not block,
    )
