import pytest
import timm
import torch
from safetensors.torch import save_file

from pytest_e3p.models import build as models
from pytest_e3p.models.build import CHECKPOINT, PRETRAINED, RANDOM, WeightsError, build_model
from pytest_e3p.models.zoo import CANDIDATES, PAPER13, UnknownModel, parse_model, reference, resolve_models


def test_model_sets_are_the_papers_13_and_25_candidates():
    assert len(PAPER13) == 13 and len(set(CANDIDATES)) == 25
    assert [m.full for m in resolve_models("paper13")] == list(PAPER13)
    # every paper model has a reference accuracy in the bundled timm table
    assert all(reference(parse_model(n)) is not None for n in CANDIDATES)


def test_names_resolve_against_timm_with_default_tags_and_clear_errors():
    m = parse_model("levit_conv_192")
    assert m.full == "levit_conv_192.fb_dist_in1k" and m.case_id == "levit_conv_192"
    assert parse_model("tiny_vit_5m_224.in1k").case_id == "tiny_vit_5m_224.in1k"  # not timm's default tag
    with pytest.raises(UnknownModel, match="did you mean"):
        parse_model("levit_conv192")
    with pytest.raises(UnknownModel, match="unknown weights tag 'nope' for levit_128s; timm has: fb_dist_in1k"):
        parse_model("levit_128s.nope")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding test_vit.r160_in1k weights, laid out as the Hub client lays it."""
    reference_model = timm.create_model("test_vit", pretrained=False)
    torch.manual_seed(0)
    for p in reference_model.parameters():
        torch.nn.init.normal_(p)
    snapshot = tmp_path / "hub" / "models--timm--test_vit.r160_in1k" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference_model.state_dict().items()}, str(snapshot / "model.safetensors"))
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models.hub_reachable.cache_clear()
    yield reference_model
    models.hub_reachable.cache_clear()


def test_pretrained_weights_load_from_the_hugging_face_cache_offline(hf_cache):
    net, weights = build_model(parse_model("test_vit"))
    assert weights.source == PRETRAINED and "cache" in weights.detail
    for (k, a), b in zip(net.state_dict().items(), hf_cache.state_dict().values()):
        assert torch.equal(a, b), k


def test_missing_weights_offline_warn_once_and_fall_back_to_random(hf_cache):
    with pytest.warns(UserWarning, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set; using random weights") as record:
        net, weights = build_model(parse_model("levit_128s"))
    assert [str(w.message) for w in record if "random weights" in str(w.message)] == [
        "pretrained weights for levit_128s.fb_dist_in1k are not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
        "using random weights (energy and latency stay valid, accuracy is the reference figure)"
    ]  # once, naming the model
    assert weights.source == RANDOM and not weights.trained


def test_checkpoints_load_weights_only_and_mismatches_name_the_file(tmp_path):
    src = timm.create_model("test_vit", pretrained=False, num_classes=10)
    path = tmp_path / "test_vit_cifar10.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    net, weights = build_model(parse_model("test_vit"), checkpoint=path, num_classes=10)
    assert weights.source == CHECKPOINT and net.num_classes == 10
    assert torch.equal(net.head.weight, src.head.weight)
    with pytest.raises(WeightsError, match="has 10 classes; the dataset has 2"):
        build_model(parse_model("test_vit"), checkpoint=path, num_classes=2)
    with pytest.raises(WeightsError, match="does not fit levit_128s"):
        build_model(parse_model("levit_128s"), checkpoint=path)
    with pytest.raises(WeightsError, match="does not exist"):
        build_model(parse_model("test_vit"), checkpoint=tmp_path / "none.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot be read as a weights-only torch file"):
        build_model(parse_model("test_vit"), checkpoint=tmp_path / "bad.pth")
