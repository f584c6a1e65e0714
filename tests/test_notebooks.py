"""The three notebooks run top to bottom (nbclient, a kernel of this interpreter) on the `tiny`
preset with synthetic data and small step counts; a failing cell fails the test.

Parameters are injected papermill-style: a cell placed after the one tagged `parameters`
overrides its values. The notebooks share one output folder, in order (2 and 3 read what 1
wrote), but each also runs alone (2 and 3 then train a small M first).
"""

import json
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "privacy-anon-tests"
CELL_TIMEOUT = 300  # s, per cell

QUICK = {
    "01_train.ipynb": dict(
        PRESET="tiny", DATA="synthetic", D_STEPS=30, M_STEPS=20, CHECKPOINT_EVERY=10,
        # phase 2 (RUN_PHASE2) runs with --run-slow only: it builds and traces Faster R-CNN
        # twice, ~3 min on 2 busy cores against ~1 min for the rest of the notebook
        JOINT_STEPS=1, FINETUNE_STEPS=1,
        NUM_IDENTITIES=6, IMAGES_PER_IDENTITY=12, SYNTHETIC_FRAMES=8),
    "02_evaluate.ipynb": dict(
        PRESET="tiny", METHODS="none,blur8,mask,learned", ACTIONS=None,
        NUM_IDENTITIES=6, IMAGES_PER_IDENTITY=8, FALLBACK_STEPS=10),
    "03_export_and_run.ipynb": dict(
        PRESET="tiny", QUANTIZE="int8", CLIP_FRAMES=8, FALLBACK_STEPS=10,
        MIN_CHANGE=0.0),  # M of a 20-step run: too short to be refused or passed on merit
}


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, monkeypatch_module):
    """A kernelspec for this interpreter in a temporary Jupyter path (a fresh CI venv has none)."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name=KERNEL, prefix=str(prefix), display_name="privacy-anon tests")
    spec = prefix / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    assert json.loads(spec.read_text())["argv"][0] == sys.executable
    monkeypatch_module.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch_module.setenv("JUPYTER_RUNTIME_DIR", str(prefix / "runtime"))  # connection files
    monkeypatch_module.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    return prefix


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


def parameters_index(nb) -> int:
    found = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(found) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return found[0]


def inject(nb, values: dict) -> None:
    """Adds a cell after the parameters cell setting `values` (each must be a parameter)."""
    index = parameters_index(nb)
    params = nb.cells[index].source
    for name in values:
        assert f"\n{name} = " in f"\n{params}", f"{name} is not in the parameters cell"
    cell = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in values.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)


@pytest.mark.parametrize("name", list(QUICK))
def test_notebook_is_stripped_and_has_one_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    parameters_index(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs not stripped"


@pytest.mark.parametrize("name", list(QUICK))
def test_notebook_runs(name, kernel_env, workdir, request):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    train_out = workdir / "runs"
    values = dict(QUICK[name])
    if name.startswith("01"):
        values["OUT"] = str(train_out)
        values["RUN_PHASE2"] = bool(request.config.getoption("--run-slow"))
    else:
        values["TRAIN_OUT"] = str(train_out)
        values["OUT"] = str(workdir / Path(name).stem)
    inject(nb, values)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError naming the cell that failed
    finally:  # the executed notebook, outputs and all, for a look after a failure
        nbformat.write(nb, workdir / f"executed-{name}")
    print(f"{name}: {time.perf_counter() - start:.1f} s")
    if name.startswith("01"):
        if values["RUN_PHASE2"]:
            assert (train_out / "finetune" / "metrics.json").is_file()
        run = train_out / "adversarial"
        assert (run / "modifier.keras").is_file() and (run / "classifier.keras").is_file()
        assert list((run / "samples").glob("step_*.png"))
        assert list((run / "checkpoints").glob("ckpt-*.index"))
        assert list((run / "logs").rglob("events.out.tfevents.*"))
    elif name.startswith("02"):
        out = Path(values["OUT"])
        report = json.loads((out / "report.json").read_text())
        assert set(report["methods"]) == {"none", "blur8", "mask", "learned"}
        assert (out / "tradeoff.png").is_file() and (out / "per_class.md").is_file()
    else:
        out = Path(values["OUT"])
        assert (out / "bundle" / "modifier.tflite").is_file()
        assert (out / "clip-anon.mp4").stat().st_size > 0
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{name}: no figure was shown"
