import pytest

from privacy_anon.config import ConfigError, apply_overrides, get_preset, load_config


def test_presets_have_the_papers_and_tiny_sizes():
    paper = get_preset("paper")
    assert (paper.modifier.input_size, paper.modifier.num_blocks) == (256, 9)
    assert (paper.classifier.depth, paper.classifier.embedding_dim) == (20, 512)
    assert (paper.classifier.input_height, paper.classifier.input_width) == (112, 96)
    assert paper.classifier.head == "asoftmax" and paper.classifier.margin == 4
    assert (paper.train.lr_modifier, paper.train.lr_detector, paper.train.beta1) == (3e-4, 1e-3, 0.5)
    assert (paper.train.epochs, paper.train.lr_drop_epoch) == (12, 7)
    tiny = get_preset("tiny")
    assert tiny.modifier.input_size < paper.modifier.input_size
    assert get_preset("mobile").name == "mobile"


def test_yaml_overrides_and_resolved_config(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("train:\n  lambda_l1: 2.5\nmodifier:\n  filters: 8\n")
    cfg = load_config("tiny", path)
    assert cfg.train.lambda_l1 == 2.5 and cfg.modifier.filters == 8
    cfg.save(tmp_path / "resolved.yaml")
    again = load_config("tiny", tmp_path / "resolved.yaml")
    assert again.to_dict() == cfg.to_dict()


def test_unknown_override_key_is_an_error():
    with pytest.raises(ConfigError, match="lambda_l2"):
        apply_overrides(get_preset("tiny"), {"train": {"lambda_l2": 1.0}})
