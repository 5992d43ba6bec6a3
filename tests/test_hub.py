"""Loading from and publishing to the Hugging Face Hub, with no network: every test runs with
``HF_HUB_OFFLINE=1`` on a Hub cache it lays out itself (blobs, snapshot links, refs), and publishing
is captured by replacing ``HfApi``'s calls that would reach the Hub."""

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Sequence

import pytest
import torch
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download

from codec import Codec, SpectralCodecConfig
from generation import AudioGen, AudioLanguageModel
from generation.audiogen import DEFAULT_PRETRAINED as SHIPPED_AUDIOGEN
from generation.vocabulary import read_vocabulary
from vocoder import CheckpointError, Vocoder
from vocoder.checkpoint import hub_repo_id

from presets import TINY_CODEC, TINY_LM

MAIN, OTHER = "a" * 40, "b" * 40  # commit hashes of two revisions of a repo
MODEL_CLASSES = [Codec, Vocoder]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache under tmp_path, offline (huggingface_hub reads its settings at import)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    for name, value in (("HF_HUB_OFFLINE", True), ("HF_HUB_CACHE", str(cache))):
        monkeypatch.setenv(name, str(int(value)) if isinstance(value, bool) else value)
        monkeypatch.setattr(constants, name, value)
    return cache


def cache_snapshot(cache: Path, repo_id: str, folder: Path, commit: str, refs: Sequence[str] = ("main",)) -> Path:
    """Lay ``folder`` out in ``cache`` as huggingface_hub does: blobs by content hash, snapshot files
    linking to them, and ``refs`` naming ``commit``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def build(cls, seed: int):
    """A small seeded model of ``cls``."""
    torch.manual_seed(seed)
    config = TINY_CODEC if cls is Codec else SpectralCodecConfig.tiny().vocoder
    return cls(config).eval()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_models_load_by_repo_id_and_revision_from_the_cache_offline(hub_cache, tmp_path, cls):
    first, second = build(cls, 0), build(cls, 1)
    cache_snapshot(hub_cache, "user/model", first.save_pretrained(tmp_path / "a"), MAIN)
    cache_snapshot(hub_cache, "user/model", second.save_pretrained(tmp_path / "b"), OTHER, refs=("v2",))
    assert same_weights(cls.from_pretrained("user/model"), first)
    assert same_weights(cls.from_pretrained("user/model", revision="v2"), second)
    assert same_weights(cls.from_pretrained("user/model", revision=MAIN), first)
    # the layout is the Hub's own: its download functions resolve from it as well
    assert Path(hf_hub_download("user/model", "config.json", revision="v2")).read_bytes() == \
        (tmp_path / "b" / "config.json").read_bytes()
    assert Path(snapshot_download("user/model")).name == MAIN


def test_audiogen_loads_by_repo_id_from_the_cache_offline(hub_cache, tmp_path):
    torch.manual_seed(0)
    gen = AudioGen(AudioLanguageModel(TINY_LM), Codec(TINY_CODEC))
    cache_snapshot(hub_cache, "user/audiogen", gen.save_pretrained(tmp_path / "gen"), MAIN, refs=("v1",))
    loaded = AudioGen.from_pretrained("user/audiogen", revision="v1")
    assert same_weights(loaded.lm, gen.lm) and same_weights(loaded.codec, gen.codec)


def test_shipped_models_still_load_with_no_argument_offline_on_an_empty_cache(hub_cache):
    assert Vocoder.from_pretrained().config == Vocoder.from_pretrained(Vocoder.default_pretrained).config
    assert Codec.from_pretrained().num_codebooks > 0
    assert not any(hub_cache.iterdir())


def test_a_local_folder_wins_over_a_repo_id_of_the_same_name(hub_cache, tmp_path, monkeypatch):
    hub, local = build(Codec, 0), build(Codec, 1)
    cache_snapshot(hub_cache, "user/model", hub.save_pretrained(tmp_path / "hub-model"), MAIN)
    local.save_pretrained(tmp_path / "work" / "user" / "model")
    monkeypatch.chdir(tmp_path / "work")
    assert same_weights(Codec.from_pretrained("user/model"), local)
    with pytest.raises(CheckpointError, match="local path"):
        Codec.from_pretrained("user/model", revision="main")


@pytest.mark.parametrize("load", [Codec.from_pretrained, Vocoder.from_pretrained, AudioGen.from_pretrained],
                         ids=["Codec", "Vocoder", "AudioGen"])
def test_a_repo_missing_from_the_cache_offline_is_one_line_naming_hf_hub_offline(hub_cache, tmp_path, load):
    for args in (("user/absent",), ("user/absent", "v9")):
        with pytest.raises(CheckpointError) as info:
            load(args[0], revision=args[-1] if len(args) > 1 else None)
        message = str(info.value)
        assert "HF_HUB_OFFLINE=1" in message and "user/absent" in message and "\n" not in message
    # a revision the cache lacks of a repo it holds
    cache_snapshot(hub_cache, "user/held", build(Codec, 0).save_pretrained(tmp_path / "m"), MAIN)
    with pytest.raises(CheckpointError, match="user/held@v9 .*HF_HUB_OFFLINE=1"):
        Codec.from_pretrained("user/held", revision="v9")


def test_names_that_cannot_be_repo_ids_stay_local_paths(hub_cache, tmp_path):
    assert hub_repo_id("user/grvq-codec") == "user/grvq-codec" and hub_repo_id(Path("user/m")) == "user/m"
    for name in ("mymodel", "/abs/path", "a/b/c", "./x", "user/", "../up"):
        assert hub_repo_id(name) is None
    with pytest.raises(CheckpointError, match="is not a directory"):
        Codec.from_pretrained(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no AudioGen model"):
        AudioGen.from_pretrained("/nonexistent/model")


def corrupt_weights(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"not safetensors")


def drop_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def break_config(folder: Path) -> None:
    (folder / "config.json").write_text("{broken")


def swap_class(folder: Path) -> None:
    payload = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**payload, "class": "Vocoder"}))


@pytest.mark.parametrize("damage, message", [
    (corrupt_weights, "is not a valid safetensors file"),
    (drop_weights, "model.safetensors not found"),
    (break_config, "is not valid JSON"),
    (swap_class, "holds a 'Vocoder' model, expected a codec"),
])
def test_a_downloaded_folder_fails_the_same_checks_as_a_local_one(hub_cache, tmp_path, damage, message):
    folder = build(Codec, 0).save_pretrained(tmp_path / "m")
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        Codec.from_pretrained(folder)
    cache_snapshot(hub_cache, "user/broken", folder, MAIN)
    with pytest.raises(CheckpointError, match=message):
        Codec.from_pretrained("user/broken")


# ---------------------------------------------------------------------------------- publishing


@pytest.fixture
def uploads(hub_cache, monkeypatch) -> List[SimpleNamespace]:
    """HfApi's calls that would reach the Hub, replaced: each commit is captured with its files' bytes."""
    commits: List[SimpleNamespace] = []
    repos: Dict[str, dict] = {}

    def create_repo(self, repo_id, **kwargs):
        repos[repo_id] = kwargs

    def create_branch(self, repo_id, branch, **kwargs):
        repos.setdefault(repo_id, {}).setdefault("branches", []).append(branch)

    def create_commit(self, repo_id, operations, **kwargs):
        files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        commits.append(SimpleNamespace(repo_id=repo_id, files=files, repo=repos[repo_id], **kwargs))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{MAIN}")

    for name, call in (("create_repo", create_repo), ("create_branch", create_branch),
                       ("create_commit", create_commit)):
        monkeypatch.setattr(HfApi, name, call)
    return commits


def unpack(files: Dict[str, bytes], folder: Path) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_push_to_hub_publishes_config_weights_and_card_that_load_back(uploads, hub_cache, tmp_path, cls):
    model = build(cls, 0)
    url = model.push_to_hub("user/model", private=True)
    commit = uploads[-1]
    assert url.startswith("https://huggingface.co/user/model/commit/") and commit.repo["private"] is True
    assert set(commit.files) == {"config.json", "model.safetensors", "README.md"}
    assert f'{cls.__name__}.from_pretrained("user/model")' in commit.files["README.md"].decode()
    cache_snapshot(hub_cache, "user/model", unpack(commit.files, tmp_path / "pushed"), MAIN)
    assert same_weights(cls.from_pretrained("user/model"), model)

    card = tmp_path / "card.md"
    card.write_text("# My model\n")
    model.push_to_hub("user/model", card=card, revision="v2")
    commit = uploads[-1]
    assert commit.files["README.md"] == b"# My model\n" and commit.revision == "v2"
    assert commit.repo["branches"] == ["v2"]


def test_push_folder_to_hub_publishes_the_shipped_codec_with_its_card(uploads):
    folder = Codec.default_pretrained
    Codec.push_folder_to_hub(folder, "user/grvq-codec")
    files = uploads[-1].files
    assert set(files) == {"config.json", "model.safetensors", "MODEL_CARD.md", "README.md"}
    assert files["README.md"] == files["MODEL_CARD.md"] == (folder / "MODEL_CARD.md").read_bytes()
    assert files["model.safetensors"] == (folder / "model.safetensors").read_bytes()


def test_audiogen_folder_with_codec_reference_publishes_and_loads_back(uploads, hub_cache, tmp_path):
    AudioGen.push_folder_to_hub(SHIPPED_AUDIOGEN, "user/audiogen")
    files = uploads[-1].files
    assert set(files) == {"lm/config.json", "lm/model.safetensors", "codec.json", "vocabulary.json", "MODEL_CARD.md",
                          "README.md"}
    assert files["codec.json"] == (SHIPPED_AUDIOGEN / "codec.json").read_bytes()
    cache_snapshot(hub_cache, "user/audiogen", unpack(files, tmp_path / "pushed"), MAIN)
    loaded = AudioGen.from_pretrained("user/audiogen")  # lm/ from the Hub, the shipped codec by reference
    assert same_weights(loaded.lm, AudioLanguageModel.from_pretrained(SHIPPED_AUDIOGEN / "lm"))
    assert loaded.known_sounds() == read_vocabulary(SHIPPED_AUDIOGEN / "vocabulary.json") is not None


def test_audiogen_push_to_hub_publishes_lm_codec_and_card(uploads, hub_cache, tmp_path):
    torch.manual_seed(0)
    gen = AudioGen(AudioLanguageModel(TINY_LM), Codec(TINY_CODEC))
    gen.push_to_hub("user/tiny-audiogen")
    files = uploads[-1].files
    assert set(files) == {"lm/config.json", "lm/model.safetensors", "codec/config.json",
                          "codec/model.safetensors", "README.md"}
    cache_snapshot(hub_cache, "user/tiny-audiogen", unpack(files, tmp_path / "pushed"), MAIN)
    loaded = AudioGen.from_pretrained("user/tiny-audiogen")
    assert same_weights(loaded.lm, gen.lm) and same_weights(loaded.codec, gen.codec)


def test_nothing_is_published_from_a_folder_that_fails_the_checks(uploads, tmp_path):
    folder = build(Codec, 0).save_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no model card"):
        Codec.push_folder_to_hub(folder, "user/model")
    (folder / "MODEL_CARD.md").write_text("# card\n")
    with pytest.raises(CheckpointError, match="holds a 'WaveformCodec' model, expected 'Vocoder'"):
        Vocoder.push_folder_to_hub(folder, "user/model")
    with pytest.raises(CheckpointError, match="not a Hugging Face Hub model id"):
        Codec.push_folder_to_hub(folder, "no-namespace")
    corrupt_weights(folder)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        Codec.push_folder_to_hub(folder, "user/model")
    with pytest.raises(CheckpointError, match="no AudioGen model|is not a directory"):
        AudioGen.push_folder_to_hub(tmp_path / "nowhere", "user/model")
    assert uploads == []


def test_publishing_while_offline_says_so(hub_cache, tmp_path):
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE=1 forbids publishing user/model"):
        build(Codec, 0).push_to_hub("user/model", token="hf_test")
