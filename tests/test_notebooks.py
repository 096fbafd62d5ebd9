"""Every notebook in notebooks/ runs top to bottom (python3 kernel, CPU, quick settings).

The notebooks check their own results as they go (a reloaded checkpoint reproduces the run's
retrieval metrics, the alignment report reproduces the CKA the run logged, the data's shapes match
the model's), so a cell that raises fails the test. Their quick settings are the shipped
`runlocal` configs, and the kernels use the suite's compilation cache.
"""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

from subprocess_utils import REPO_ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO_ROOT, "notebooks", "*.ipynb")))


def test_notebooks_exist_and_have_no_outputs():
    assert [os.path.basename(p) for p in NOTEBOOKS] == [
        "01_quickstart.ipynb", "02_alignment.ipynb", "03_bring_your_own_data.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, (
                    f"{path}: commit notebooks with cleared outputs")


def test_notebooks_load_configs_by_name():
    """Configs are loaded the one way (vatt.config_files.load), never by path tricks."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "config_files.load(" in code, path
        for banned in ("importlib", "get_config(", "sys.path", "os.chdir("):
            assert banned not in code, f"{path}: {banned}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # The kernel inherits the suite's compilation cache (JAX_COMPILATION_CACHE_DIR, set by
    # conftest.py): 01 and 02 train the same pretrain:tiny,runlocal model for 60 steps, whose
    # initialisation and evaluation programs are those of the other runlocal tests.
    assert os.environ.get("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # workdirs of the notebooks go here
    # The kernel is a fresh process: make the checkout importable without installing it.
    monkeypatch.setenv("PYTHONPATH", REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": os.path.dirname(path)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    if os.environ.get("VATT_NOTEBOOK_OUTPUTS"):  # debugging: keep the executed notebook
        nbformat.write(nb, os.path.join(os.environ["VATT_NOTEBOOK_OUTPUTS"],
                                        os.path.basename(path)))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
