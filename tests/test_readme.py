"""Every command in README.md is exercised, so a snippet that no longer works fails CI.

- Each `privacy-anon ...` line of the ```bash blocks parses with `cli.build_parser()`, and
  every `--flag` it uses is one of its subcommand's own options, spelt in full (argparse
  would accept a stale flag that happens to prefix a real one).
- The commands then run for real, in README order, in a scratch folder holding small inputs
  of the names the README uses (`CASIA-WebFace/`, `faces/`, `clip.mp4`, and
  `weights/human-models/` linked to the folder PRIVACY_ANON_FACERES names), with small step
  counts and a small config. Commands that take minutes even then (the joint and finetune
  stages, `evaluate` with action detection) run with `--run-slow`; without it `evaluate`
  runs its faces half. `demo` as written is tests/test_demo.py (slow).
- The set-up block's test command is the one `.ci/run` runs; the YAML block loads as config
  overrides; the Python API block runs with its step counts cut to 2.
"""

import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from privacy_anon.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# Small enough for seconds per command; every key must exist (unknown keys are errors).
SMALL_CONFIG = """\
data:
  num_identities: 6
  images_per_identity: 8
  synthetic_frames: 8
train:
  face_batch_size: 12
  classifier_steps: 2
  steps_per_epoch: 2
  checkpoint_every: 2
  finetune_steps: 1
"""


def blocks(lang: str) -> list[tuple[int, str]]:
    """(line number, text) of README.md's fenced blocks of `lang`."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) == lang]


def shell_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command in the bash blocks: continuations joined, comments and
    blank lines dropped, `a && b` split."""
    found = []
    for start, text in blocks("bash"):
        pending, first = "", None
        for offset, line in enumerate(text.splitlines()):
            first = start + offset if first is None else first
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            argv = shlex.split(pending + line, comments=True)
            while argv:
                cut = argv.index("&&") if "&&" in argv else len(argv)
                found.append((f"README.md:{first}", argv[:cut]))
                argv = argv[cut + 1:]
            pending, first = "", None
    return found


def cli_commands() -> list[tuple[str, list[str]]]:
    return [(where, argv[1:]) for where, argv in shell_commands() if argv[0] == "privacy-anon"]


def subparser(name: str):
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices[name]


def test_readme_has_commands():
    commands = [argv[0] for _, argv in cli_commands()]
    assert {"demo", "train", "detect-faces", "evaluate", "export", "anonymize"} <= set(commands)


@pytest.mark.parametrize("where,argv", [pytest.param(w, a, id=f"{w}:{a[0]}") for w, a in cli_commands()])
def test_readme_command_parses(where, argv, capsys):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `privacy-anon {shlex.join(argv)}` does not parse: "
                    f"{capsys.readouterr().err.strip().splitlines()[-1]}")
    assert args.command == argv[0]
    options = subparser(argv[0])._option_string_actions
    for token in argv[1:]:
        flag = token.split("=")[0]
        if flag.startswith("-") and flag != "-":
            assert flag in options, f"{where}: `{flag}` is not an option of `privacy-anon {argv[0]}`"


def test_every_readme_shell_command_is_covered_here():
    """A new kind of command in the README needs a check in this file."""
    for where, argv in shell_commands():
        covered = (argv[0] == "privacy-anon"  # parsed and run below
                   or argv[:2] == ["pip", "install"]  # what .ci/run does in a fresh venv
                   or argv[:3] == ["python", "-m", "pytest"])  # checked against .ci/run
        assert covered, f"{where}: `{shlex.join(argv)}` is not exercised by tests/test_readme.py"


def test_readme_test_command_is_what_ci_runs():
    (start, setup), *_ = blocks("bash")
    test_line = next(line for line in setup.splitlines() if "pytest" in line)
    assert test_line.strip() in (ROOT / ".ci" / "run").read_text(), \
        f"README.md:{start}: the test command differs from .ci/run's"


def test_readme_yaml_block_is_a_valid_override(tmp_path):
    from privacy_anon.config import load_config

    (_, text), = blocks("yaml")
    path = tmp_path / "override.yaml"
    path.write_text(text)
    cfg = load_config("tiny", path)  # unknown keys or bad values raise ConfigError
    assert cfg.train.lambda_l1 == 10.0


# ----------------------------------------------------------------------------- running them

def _set(argv: list[str], flag: str, value: str) -> None:
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]


def _drop(argv: list[str], flag: str) -> None:
    i = argv.index(flag)
    del argv[i:i + 2]


def adapt(argv: list[str], slow: bool) -> list[str] | None:
    """The README command as run here (small config and steps), or None: not in this run."""
    argv = list(argv)
    cmd = argv[0]
    if cmd in ("train", "evaluate", "demo") and "--config" not in argv:
        argv += ["--config", "small.yaml"]
    if cmd == "demo":
        return argv  # three short trainings with the small config (the real demo: test_demo.py)
    if cmd == "anonymize-batch" or "--multi-worker" in argv:
        return None  # a Beam venv / a cluster: run by tests/test_batch.py, tests/test_multi_worker.py
    if cmd == "train":
        stage = argv[argv.index("--stage") + 1]
        if stage in ("joint", "finetune") and not slow:
            return None
        _set(argv, "--steps", "1" if stage in ("joint", "finetune") else "2")
        if "--preset" in argv and argv[argv.index("--preset") + 1] == "paper":
            _set(argv, "--preset", "tiny")  # the paper's sizes take minutes a step on a CPU
    if cmd == "export":
        argv += ["--min-change", "0"]  # M here trained 2 steps: not an M that changes faces yet
    if cmd == "evaluate" and "--actions" in argv:
        if slow:
            _set(argv, "--detector-steps", "2")
        else:
            _drop(argv, "--actions")
    return argv


def make_inputs(root: Path) -> None:
    """The README's example inputs: a CASIA-style folder, a folder of faces, a short clip."""
    import av
    import cv2
    from skimage.data import astronaut

    image = astronaut()  # one face near (171..279, 67..175)
    for ident in range(3):
        folder = root / "CASIA-WebFace" / f"{ident:07d}"
        folder.mkdir(parents=True)
        for j in range(5):
            x, y, s = 100 + 8 * j, 10 + 5 * j, 260 - 10 * j
            crop = image[y:y + s, x:x + s]
            crop = np.roll(crop, ident, axis=2) if ident else crop  # other colours: "someone else"
            crop = cv2.resize(crop[:, ::-1] if j % 2 else crop, (160, 160), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(folder / f"{j:03d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    shutil.copytree(root / "CASIA-WebFace" / "0000000", root / "faces")
    with av.open(str(root / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(6):
            x, y = 20 + 10 * i, 10 + 4 * i
            frame = cv2.resize(image[y:y + 360, x:x + 480], (320, 240), interpolation=cv2.INTER_AREA)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    (root / "small.yaml").write_text(SMALL_CONFIG)
    # the README's k3.yaml, small
    (root / "k3.yaml").write_text(SMALL_CONFIG + "  train_classifier: true\n  adversaries: 3\n"
                                  "  adv_weight: 1.0\n  lambda_identity: 1.0\n")


def test_readme_commands_run(tmp_path, monkeypatch, request, faceres_dir):
    slow = request.config.getoption("--run-slow")
    make_inputs(tmp_path)
    # `mobile`'s npm weights where the README unpacks them (.ci/faceres.sh)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "human-models").symlink_to(faceres_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for where, argv in cli_commands():
        run = adapt(argv, slow)
        if run is None:
            continue
        start = time.perf_counter()
        code = main(run)
        assert code == 0, f"{where}: `privacy-anon {shlex.join(run)}` exited with {code}"
        print(f"{where}: {time.perf_counter() - start:5.1f} s  privacy-anon {shlex.join(run)}")
    assert (tmp_path / "runs" / "m" / "modifier.keras").is_file()
    assert (tmp_path / "cache" / "casia" / "landmarks.csv").is_file()
    assert (tmp_path / "report" / "tradeoff.png").is_file()
    assert (tmp_path / "bundle" / "modifier.tflite").is_file()
    assert (tmp_path / "yardstick" / "privacy_plane.png").is_file()
    assert (tmp_path / "runs" / "k3-again" / "classifier-3.keras").is_file()
    for name in ("clip-anon.mp4", "clip-blur.mp4"):
        assert (tmp_path / name).stat().st_size > 0
    if slow:
        assert (tmp_path / "runs" / "ft" / "metrics.json").is_file()


def test_console_script_runs_a_readme_command(tmp_path):
    """`privacy-anon` itself (the entry point), on the cheapest README command (no TensorFlow)."""
    script = Path(sys.executable).with_name("privacy-anon")
    if not script.exists():
        pytest.skip("the package is not installed in this interpreter's environment")
    where, argv = next((w, a) for w, a in cli_commands() if "--method" in a)
    make_inputs(tmp_path)
    proc = subprocess.run([str(script), *argv, "--no-progress"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{where}: {proc.stderr[-2000:]}"
    assert (tmp_path / argv[argv.index("-o") + 1]).stat().st_size > 0


def test_readme_python_api_runs(monkeypatch, tmp_path):
    (start, code), = blocks("python")
    code, n = re.subn(r"steps_per_epoch=\d+", "steps_per_epoch=2", code)
    assert n >= 1, f"README.md:{start}: the Python block no longer calls fit(steps_per_epoch=...)"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    exec(compile(code, f"README.md:{start}", "exec"), namespace)
    assert namespace["gan"].stage == "adversarial"
