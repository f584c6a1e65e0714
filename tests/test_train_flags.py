"""`train` runs what the user asked for: flags override only the field they name, a flag that
contradicts the YAML is an error naming both, and the run's config.yaml is what ran."""

import cv2
import yaml
from skimage import data as skdata

from privacy_anon import cli


def _csv_actions(tmp_path):
    """A real-format custom action data set (CSV) of face-free photos."""
    root = tmp_path / "custom"
    root.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(root / name), cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR))
    csv_path = root / "actions.csv"
    csv_path.write_text("frame_path,x1,y1,x2,y2,action\na.jpg,10,10,200,200,drink\n"
                        "b.jpg,20,20,300,300,pour\n")
    return csv_path


def _write_yaml(tmp_path, data: dict):
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_data_synthetic_keeps_the_yaml_action_data(tmp_path, capsys):
    """The issue's case: --data synthetic once replaced the YAML's actions with generated ones."""
    csv_path = _csv_actions(tmp_path)
    my = _write_yaml(tmp_path, {"data": {"actions": str(csv_path), "actions_format": "csv",
                                         "num_identities": 6, "images_per_identity": 12}})
    code = cli.main(["train", "--preset", "tiny", "--stage", "joint", "--data", "synthetic",
                     "--config", str(my), "--steps", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    # the CSV's frames were used (and they hold no face): stopped before training
    assert code == 2, err
    assert "no face in any of the 2 training frames" in err and str(csv_path) in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_flag_contradicting_the_yaml_is_an_error(tmp_path, capsys):
    my = _write_yaml(tmp_path, {"data": {"faces": str(tmp_path / "casia")}, "train": {"seed": 5}})
    code = cli.main(["train", "--preset", "tiny", "--stage", "classifier", "--data", "synthetic",
                     "--config", str(my), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--data synthetic contradicts data.faces" in err[0] and str(my) in err[0]
    my = _write_yaml(tmp_path, {"train": {"seed": 5}})
    code = cli.main(["train", "--preset", "tiny", "--stage", "classifier", "--seed", "3",
                     "--config", str(my), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "--seed 3 contradicts train.seed: 5" in err[0]
    assert not (tmp_path / "run").exists()


def test_run_config_is_what_ran(tmp_path, capsys):
    csv_path = _csv_actions(tmp_path)
    my = _write_yaml(tmp_path, {"data": {"actions": str(csv_path), "actions_format": "csv",
                                         "faces": "synthetic", "num_identities": 4,
                                         "images_per_identity": 8},
                                "train": {"classifier_steps": 2, "checkpoint_every": 2,
                                          "face_batch_size": 8}})
    run = tmp_path / "run"
    code = cli.main(["train", "--preset", "tiny", "--stage", "classifier", "--data", "synthetic",
                     "--seed", "3", "--config", str(my), "--out", str(run)])
    assert code == 0, capsys.readouterr().err[-2000:]
    ran = yaml.safe_load((run / "config.yaml").read_text())
    assert ran["data"]["faces"] == "synthetic" and ran["train"]["seed"] == 3
    assert ran["data"]["actions"] == str(csv_path) and ran["data"]["actions_format"] == "csv"
    assert ran["train"]["classifier_steps"] == 2 and ran["data"]["num_identities"] == 4
