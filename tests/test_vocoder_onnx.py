import pytest
import torch

from vocoder import MelConfig, Vocoder, VocoderConfig
from vocoder.modules import BackboneConfig
from vocoder.onnx import export_onnx

onnx = pytest.importorskip("onnx")


@pytest.mark.parametrize("kind", ["convnext", "residual"])
def test_export_passes_the_checker_with_a_dynamic_frame_axis(tmp_path, kind):
    torch.manual_seed(0)
    mel_config = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=20)
    model = Vocoder(VocoderConfig(mel=mel_config, backbone=BackboneConfig(kind, 32, 64, 2),
                                  n_fft=256, win_length=256)).eval()
    path = export_onnx(model, tmp_path / "vocoder.onnx", frames=16)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    (mel_input,) = graph.graph.input
    assert [d.dim_param or d.dim_value for d in mel_input.type.tensor_type.shape.dim] == ["batch", 20, "frames"]

    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, frames in [(1, 16), (2, 37)]:  # another length than the traced one
        mel = model.mel(torch.randn(batch, frames * model.hop_length) * 0.1, model.sample_rate)
        (waveform,) = session.run(None, {"mel": mel.numpy()})
        torch.testing.assert_close(torch.from_numpy(waveform), model.decode(mel, refine=0), atol=1e-5, rtol=1e-4)
