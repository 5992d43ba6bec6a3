"""Streaming codec (issue 25, part 1): the causal variant, StreamEncoder/StreamDecoder, packets, concealment,
the stream-encode | stream-decode pipe, and the warm start from the shipped offline codec. Tiny models, CPU."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import BitstreamError, Codec, SpectralCodec, SpectralCodecConfig
from codec.model import DEFAULT_PRETRAINED
from codec.streaming import (PACKET_OVERHEAD, Packet, PacketLayout, StreamPreamble, algorithmic_latency,
                             decode_with_losses, frame_packet, pack_packet, random_losses, unpack_packet)
from vocoder.metrics import mel_distance
from vocoder.phase import PhaseState, pghi_phase, pghi_step

ROOT = Path(__file__).resolve().parents[1]
HOP = 320


@pytest.fixture(scope="module")
def model() -> SpectralCodec:
    torch.manual_seed(0)
    return SpectralCodec(SpectralCodecConfig.tiny(causal=True)).eval()


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> Path:
    return model.save_pretrained(tmp_path_factory.mktemp("streaming") / "tiny")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """1.3 s of a voiced-like test signal (harmonics with a moving pitch, noise bursts), not whole frames."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * 16_000)) / 16_000
    pitch = 120 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16_000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (np.sin(2 * np.pi * 3 * t) > -0.3)
    return (0.1 * voiced + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def stream(model, pcm, chunk: int, num_codebooks=None):
    encoder = model.stream_encoder(num_codebooks)
    packets = []
    for first in range(0, len(pcm), chunk):
        packets += encoder.push(pcm[first:first + chunk])
    packets += encoder.flush()
    decoder = model.stream_decoder()
    pieces = [decoder.push(packet) for packet in packets]
    return packets, pieces, np.concatenate([*pieces, decoder.flush()])


def test_any_chunking_gives_the_same_packets_and_audio(model, speech):
    packets, _, audio = stream(model, speech, 16_000)
    for chunk in (1, 317, 320, 4096):
        other_packets, _, other_audio = stream(model, speech, chunk)
        assert other_packets == packets
        assert np.array_equal(other_audio, audio)
    pcm16 = (speech * 32768).round().astype(np.int16)  # int16 PCM and its bytes are read as the same samples
    assert stream(model, pcm16, 1000)[0] == stream(model, pcm16.tobytes(), 1000)[0]
    # One packet per 20 ms frame, plus the partial last frame and one of silence from flush().
    assert len(packets) == -(-len(speech) // HOP) + 1


def test_each_packet_gives_one_frame_of_audio_aligned_with_the_input(model, speech):
    packets, pieces, audio = stream(model, speech, 555)
    assert [len(p) for p in pieces] == [0] + [HOP] * (len(packets) - 1)  # the first: the synthesis delay
    assert len(audio) == len(packets) * HOP >= len(speech) and np.isfinite(audio).all()
    assert algorithmic_latency(model).total_ms == 40.0  # 20 ms frame + 0 lookahead + 20 ms synthesis


def test_streaming_equals_offline_coding(model, speech):
    """Packets carry the offline encoder's codes, and Codec.decode of them synthesises what the stream
    does. Without the consistency iterations the audio agrees up to float rounding: the mels agree to 1e-5
    (whole-signal convolutions sum in another order), and PGHI's choices of which neighbour a bin follows
    may amplify that locally (-56 dB here; the bound is -40 dB). The iterations feed each frame's phase
    into the next, so such rounding moves the phase track (not the spectrum): with them the two agree in
    their log-mel spectrograms, far closer than either is to the input."""
    packets, _, audio = stream(model, speech, 640)
    layout = PacketLayout.of(model)
    codes = np.stack([unpack_packet(p, layout).codes for p in packets], -1)[None]
    offline_codes = model.encode(speech, 16_000)
    assert np.array_equal(codes[..., :offline_codes.shape[-1]], offline_codes.numpy())
    offline = model.decode(torch.from_numpy(codes))[0, 0].numpy()
    assert offline.shape == audio.shape
    apart = mel_distance(torch.from_numpy(offline)[None], torch.from_numpy(audio)[None], 16_000)
    from_input = mel_distance(torch.from_numpy(speech)[None], torch.from_numpy(audio[:len(speech)])[None], 16_000)
    assert apart < 0.01 * from_input, (apart, from_input)

    iterations, model.synthesis.iterations = model.synthesis.iterations, 0
    try:
        _, _, audio = stream(model, speech, 640)
        offline = model.decode(torch.from_numpy(codes))[0, 0].numpy()
    finally:
        model.synthesis.iterations = iterations
    error = np.sum((offline - audio) ** 2) / np.sum(offline ** 2)
    assert error < 1e-4, f"streaming differs from offline by {10 * np.log10(error):.1f} dB"


def test_the_training_graph_is_causal(model):
    """What the fine-tune trains (whole-signal forward) never looks ahead, and equals the streaming steps."""
    x = torch.randn(1, 1, 20 * HOP) * 0.1
    later = x.clone()
    later[..., 12 * HOP:] = torch.randn(1, 1, 8 * HOP)
    with torch.no_grad():
        latent, changed = model.encoder(x), model.encoder(later)
        assert torch.equal(latent[..., :12], changed[..., :12]) and not torch.equal(latent, changed)
        cache = {}
        steps = torch.cat([model.encoder.step(x[0, :, f * HOP:(f + 1) * HOP], cache) for f in range(20)], -1)
        assert torch.allclose(steps, latent, atol=1e-5)
        mel = model.decoder(latent)
        other = latent.clone()
        other[..., 7:] += 1
        assert torch.equal(model.decoder(other)[..., :14], mel[..., :14])
        cache = {}
        steps = torch.cat([model.decoder.step(latent[..., f:f + 1], cache) for f in range(20)], -1)
        assert torch.allclose(steps, mel, atol=1e-4)
        output = model(x)
        assert output.mel.shape == output.target_mel.shape == (1, 80, 40)


def test_chunked_offline_coding_of_the_streaming_preset_is_seamless(model, speech):
    """The preset's chunk contexts cover the causal encoder and decoder (one-sided, twice as long)."""
    preset = SpectralCodecConfig.streaming()
    chunked = SpectralCodec(replace(model.config, chunking=replace(preset.chunking, frames=7))).eval()
    chunked.load_state_dict(model.state_dict())
    codes = model.encode(speech, 16_000)
    assert torch.equal(chunked.encode(speech, 16_000), codes)
    assert torch.allclose(chunked.decode(codes), model.decode(codes), atol=1e-3)


def test_causal_pghi_frame_by_frame_equals_the_block_integration():
    log_magnitude = torch.randn(2, 321, 6)
    whole = pghi_phase(log_magnitude, 640, 160, causal=True)
    state, frames = None, []
    for n in range(6):
        phase = pghi_step(log_magnitude[..., n], 640, 160, state)
        state = PhaseState(log_magnitude[..., n], phase)
        frames.append(phase)
    difference = torch.remainder(whole - torch.stack(frames, -1) + torch.pi, 2 * torch.pi) - torch.pi
    assert difference.abs().max() < 1e-3


def test_lost_packets_are_concealed_with_the_right_length(model, speech):
    packets, pieces, _ = stream(model, speech, 16_000)
    decoder = model.stream_decoder()
    out = []
    for index, packet in enumerate(packets):
        out.append(decoder.push(None if index in (0, 10, 11, 12, 30) else packet))
    assert [len(p) for p in out] == [0] + [HOP] * (len(packets) - 1)
    audio = np.concatenate(out)
    assert np.isfinite(audio).all()
    received = np.concatenate(pieces)
    # Faded repetitions: no louder than what was received around them (no burst, no click).
    assert np.abs(audio[9 * HOP:13 * HOP]).max() <= 2 * np.abs(received).max()
    # After the loss the decoder follows the packets again.
    assert np.isfinite(decoder.flush()).all()


def test_sequence_gaps_are_concealed_and_late_packets_dropped(model, speech):
    packets = stream(model, speech, 16_000)[0]
    decoder = model.stream_decoder()
    lengths = [len(decoder.push(p)) for p in packets[:5]]
    lengths.append(len(decoder.push(packets[8])))  # 5, 6 and 7 never arrived: concealed, then 8
    lengths.append(len(decoder.push(packets[6])))  # late: its time has passed
    lengths.append(len(decoder.push(packets[9])))
    assert lengths == [0, HOP, HOP, HOP, HOP, 4 * HOP, 0, HOP]


def test_random_losses_are_seeded_at_the_rate_asked_and_decode_to_the_input_length(model, speech):
    lost = random_losses(20_000, 0.05, seed=3)
    assert lost.dtype == bool and np.array_equal(lost, random_losses(20_000, 0.05, seed=3))
    assert not np.array_equal(lost, random_losses(20_000, 0.05, seed=4))
    assert abs(lost.mean() - 0.05) < 0.006 and not random_losses(100, 0.0).any()
    with pytest.raises(ValueError):
        random_losses(10, 1.0)
    packets, _, clean = stream(model, speech, 4096)
    assert np.array_equal(decode_with_losses(model, packets, np.zeros(len(packets), bool)), clean)
    lost = random_losses(len(packets), 0.3, seed=0)
    assert 0 < lost.sum() < len(packets)
    audio = decode_with_losses(model, packets, lost, len(speech))
    assert audio.shape == speech.shape and np.isfinite(audio).all()
    with pytest.raises(ValueError):
        decode_with_losses(model, packets, lost[:-1])


def test_packets_round_trip_in_both_modes(model):
    layout = PacketLayout.of(model)
    rng = np.random.default_rng(1)
    for count in (2, 4):  # 1 level (1 kbps with the shipped layout) and 2 levels (2 kbps)
        codes = rng.integers(0, layout.codebook_size, count)
        data = pack_packet(Packet(70_000, codes), layout)
        assert len(data) == PACKET_OVERHEAD + -(-count * layout.bits // 8)
        back = unpack_packet(data, layout)
        assert back.sequence == 70_000 % 65_536 and np.array_equal(back.codes, codes)
    shipped = PacketLayout(2, 2, 1024)
    assert len(pack_packet(Packet(0, np.zeros(4, dtype=np.int64)), shipped)) == 10  # 5 payload bytes at 2 kbps
    packets = stream(model, np.zeros(HOP * 3, dtype=np.float32), HOP, num_codebooks=2)[0]
    assert all(unpack_packet(p, layout).codes.shape == (2,) for p in packets)


def test_damaged_packets_are_refused(model):
    layout = PacketLayout.of(model)
    good = pack_packet(Packet(3, np.arange(4)), layout)
    for bad in (b"", good[:-1], good + b"\0", bytes([good[0] ^ 0x10]) + good[1:], b"\xff" * len(good)):
        with pytest.raises(BitstreamError):
            unpack_packet(bad, layout)
    with pytest.raises(BitstreamError):
        model.stream_decoder().push(good[:-2] + b"\0\0")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=24))
def test_any_bytes_decode_or_raise_the_bitstream_error(data):
    layout = PacketLayout(2, 2, 64)
    try:
        packet = unpack_packet(data, layout)
    except BitstreamError:
        return
    assert packet.codes.shape in ((2,), (4,)) and (packet.codes < 64).all()
    assert pack_packet(packet, layout) == data  # a packet that parses is exactly what its fields pack to


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 9), st.integers(0, 7))
def test_single_bit_flips_never_slip_through(byte, bit):
    layout = PacketLayout(2, 2, 64)
    data = bytearray(pack_packet(Packet(12345, np.array([1, 2, 3, 63])), layout))
    data[byte % len(data)] ^= 1 << bit
    with pytest.raises(BitstreamError):
        unpack_packet(bytes(data), layout)


def test_preamble_checks_the_model(model):
    preamble = StreamPreamble.of(model).pack()
    StreamPreamble.unpack(preamble).check(model)
    torch.manual_seed(1)
    other = SpectralCodec(SpectralCodecConfig.tiny(causal=True))
    with pytest.raises(BitstreamError, match="different model"):
        StreamPreamble.unpack(preamble).check(other)
    for bad in (preamble[:-1], b"XXXX" + preamble[4:], preamble[:10] + bytes([preamble[10] ^ 1]) + preamble[11:]):
        with pytest.raises(BitstreamError):
            StreamPreamble.unpack(bad)


def test_offline_codecs_do_not_stream():
    offline = SpectralCodec(SpectralCodecConfig.tiny())
    with pytest.raises(ValueError, match="causal"):
        offline.stream_encoder()
    with pytest.raises(ValueError, match="causal"):
        offline.stream_decoder()


def test_causal_is_hashed_only_when_set(model):
    flat = SpectralCodec(SpectralCodecConfig.tiny()).flat_config()
    assert "causal" not in flat  # offline fingerprints stay what streams and LMs carry
    offline = SpectralCodec(SpectralCodecConfig.tiny())
    offline.load_state_dict(model.state_dict())
    assert offline.fingerprint() != model.fingerprint()
    assert Codec.from_pretrained(model.save_pretrained(Path(os.environ.get("TMPDIR", "/tmp")) / "causal_fp")
                                 ).fingerprint() == model.fingerprint()


@pytest.mark.skipif(not (DEFAULT_PRETRAINED / "model.safetensors").is_file(), reason="no shipped codec")
def test_the_shipped_codec_warm_starts_the_streaming_one():
    shipped = Codec.from_pretrained(DEFAULT_PRETRAINED)
    config = SpectralCodecConfig.streaming(vocoder=shipped.config.vocoder)
    streaming = SpectralCodec(config)
    streaming.load_weights_from(DEFAULT_PRETRAINED)  # what `init: codec/pretrained/default` runs
    theirs, ours = shipped.state_dict(), streaming.state_dict()
    assert theirs.keys() == ours.keys()  # every weight carries over: encoder, codebooks, decoder, vocoder
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    assert streaming.streaming and streaming.fingerprint() != shipped.fingerprint()
    packets = streaming.stream_encoder().push(np.zeros(2 * HOP, dtype=np.float32))
    assert len(packets) == 2 and len(packets[0]) == 10


def run_cli(*args, stdin=b"", timeout=120):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "codec", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, timeout=timeout)


def test_cli_pipe_stream_encode_to_stream_decode(model, saved, speech):
    pcm = (speech * 32768).round().astype("<i2").tobytes()
    encoded = run_cli("stream-encode", "--model", str(saved), stdin=pcm)
    assert encoded.returncode == 0, encoded.stderr.decode()
    packets, _, audio = stream(model, speech, 4096)
    expected_stream = StreamPreamble.of(model).pack() + b"".join(frame_packet(p) for p in packets)
    assert encoded.stdout == expected_stream  # int16 input rounds as the float reference
    # A real shell pipe, as with arecord and aplay.
    command = (f"{sys.executable} -m codec stream-encode --model {saved} | "
               f"{sys.executable} -m codec stream-decode --model {saved}")
    piped = subprocess.run(command, shell=True, cwd=ROOT, input=pcm, capture_output=True, timeout=120,
                           env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert piped.returncode == 0, piped.stderr.decode()
    out = np.frombuffer(piped.stdout, dtype="<i2")
    assert len(out) == len(packets) * HOP
    reference = np.clip(audio, -1, 32767 / 32768) * 32768
    assert np.abs(out - reference.round()).max() <= 1
    # A lost-packet mark (length 0) and a damaged packet are concealed, not fatal.
    damaged = bytearray(packets[5])
    damaged[3] ^= 0xFF
    framed = [frame_packet(p) for p in packets]
    framed[4], framed[5] = frame_packet(None), frame_packet(bytes(damaged))
    decoded = run_cli("stream-decode", "--model", str(saved), stdin=StreamPreamble.of(model).pack() + b"".join(framed))
    assert decoded.returncode == 0 and b"packet 5 concealed" in decoded.stderr
    assert len(decoded.stdout) == len(packets) * HOP * 2


def test_cli_refuses_what_it_cannot_stream(saved, tmp_path):
    offline = SpectralCodec(SpectralCodecConfig.tiny()).save_pretrained(tmp_path / "offline")
    for args, message in ((("stream-encode", "--model", str(offline)), b"offline codec"),
                          (("stream-decode", "--model", str(saved)), b"empty input"),
                          (("stream-decode", "--model", str(saved), "--threads", "0"), b"--threads")):
        proc = run_cli(*args)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    truncated = run_cli("stream-decode", "--model", str(saved), stdin=b"GRVS" + b"\0" * 40)
    assert truncated.returncode == 1 and truncated.stderr.startswith(b"error:")
    if not (ROOT / "codec/pretrained/streaming/model.safetensors").is_file():
        proc = run_cli("stream-encode")
        assert proc.returncode == 1 and b"no streaming codec has been trained yet" in proc.stderr


def test_consistency_iterations_bring_copy_synthesis_closer_to_the_input(speech):
    """Streaming synthesis of a signal's own causal mel: the mel-consistent iterations move the output's
    spectrum towards the input's (the codec model card has what they do to PESQ on held-out speech)."""
    from vocoder.spectral import MelConfig
    from vocoder.streaming import CausalMelSpectrogram, StreamingSynthesis

    analysis = CausalMelSpectrogram(MelConfig())
    wav = torch.from_numpy(speech)[None]
    mel = analysis(wav)

    def synthesise(iterations: int) -> torch.Tensor:
        synthesis = StreamingSynthesis(analysis, iterations=iterations)
        state = synthesis.initial_state()
        pieces = [synthesis.step(mel[..., first:first + 2], state) for first in range(0, mel.shape[-1], 2)]
        return torch.cat([*pieces, synthesis.flush(state)], -1)[..., :wav.shape[-1]]

    plain, refined = synthesise(0), synthesise(2)
    assert plain.shape == refined.shape == (1, mel.shape[-1] * 160) and torch.isfinite(refined).all()
    assert mel_distance(wav, refined, 16_000) < 0.8 * mel_distance(wav, plain, 16_000)
    with pytest.raises(ValueError, match="iterations"):
        StreamingSynthesis(analysis, iterations=-1)
