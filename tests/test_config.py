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


def test_mobile_is_the_cpu_recipe_and_paper_stays_algorithm_1():
    mobile, paper = get_preset("mobile"), get_preset("paper")
    assert mobile.modifier.input_size == 128
    # M's privacy term is frozen recognizers' embeddings, not D's (RESULTS.md "Fourth pass"),
    # two of them, held to a face a detector finds ("Twelfth", "Thirteenth pass")
    assert mobile.train.recognizer == "facenet+faceres" and mobile.train.lambda_recognizer > 0
    assert mobile.train.lambda_face > 0 and paper.train.lambda_face == 0
    assert mobile.train.adv_weight == 0 and mobile.train.lambda_identity == 0
    assert mobile.train.lr_classifier < mobile.train.lr_modifier and mobile.train.lambda_color > 0
    assert mobile.data.holdout_identities > 0 and mobile.data.face_crop > 0
    # RESULTS.md "Sixth pass": image terms warmed up so M leaves the identity; 3x3 outer convs
    assert mobile.train.warmup_steps > 0 and mobile.modifier.outer_kernel == 3
    assert paper.train.warmup_steps == 0 and paper.modifier.outer_kernel == 7
    # "Seventh pass": no full-resolution layer (int8 ~2.6x faster than float per face)
    assert mobile.modifier.pixel_shuffle and not paper.modifier.pixel_shuffle
    # "Fifteenth", "Sixteenth pass": a brightness-only residual that keeps FaceMesh's points
    assert mobile.modifier.output_mode == "luma" and paper.modifier.output_mode == "tanh"
    assert mobile.train.lambda_landmarks > 0 and paper.train.lambda_landmarks == 0
    # "Twenty-eighth", "Thirty-fifth pass": fidelity as SSIM, M trained for a time, not a count
    assert mobile.train.lambda_ssim > 0 and mobile.train.lambda_l1 == 0
    assert 0 < mobile.train.max_minutes <= 50 and paper.train.max_minutes == 0
    # "Thirty-seventh pass": and the whole command keeps its hour, the release's time kept
    assert 0 < mobile.train.release_minutes < mobile.train.command_minutes <= 60
    assert paper.train.command_minutes == 0
    # "Thirty-eighth pass": with the clock, the warm-up is at most a fraction of M's steps
    assert 0 < mobile.train.warmup_fraction < 1 and paper.train.warmup_fraction == 0
    # "Thirty-sixth pass": the cheaper steps (faceres at 160 px, the originals' pass once)
    # bought no privacy; faceres sees 224 px views and the originals every step
    assert (mobile.train.faceres_size, mobile.train.recognizer_originals) == (224, "each_step")
    # the paper's settings, untouched: ascent, small lambda, equal rates, no extra terms
    assert paper.train.adv_loss == "ascent" and paper.train.lambda_l1 == 0.1
    assert paper.train.lr_modifier == paper.train.lr_classifier
    assert (paper.train.lambda_identity, paper.train.lambda_color, paper.train.lambda_lowpass) == (0, 0, 0)
    assert paper.train.lambda_recognizer == 0 and paper.train.adv_weight == 1


def test_named_choices_are_checked_where_the_file_sets_them(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("modifier: {upsample: bilinear}\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: modifier\.upsample must be one of transpose, resize"):
        load_config("mobile", path)
    path.write_text("modifier: {upsample: resize, output_mode: residual}\n")
    cfg = load_config("mobile", path)
    assert cfg.modifier.upsample == "resize"
    assert get_preset("mobile").modifier.upsample == "transpose"  # every preset: the paper's


def test_bounded_numbers_are_checked_where_the_file_sets_them(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("modifier: {int8_noise: -1}\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: modifier\.int8_noise must be in \[0, 4\], got -1"):
        load_config("mobile", path)
    path.write_text("modifier: {int8_noise: 1}\n")
    assert load_config("mobile", path).modifier.int8_noise == 1.0
    path.write_text("train: {int8_noise_from: 1.5}\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: train\.int8_noise_from must be in \[0, 1\], got 1\.5"):
        load_config("mobile", path)
