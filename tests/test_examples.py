"""The example notebooks in examples/ run top to bottom and show what they claim.

examples/sklearn_seeds.ipynb trains five seeds of scikit-learn's MLPClassifier on
the digits, records their hidden activity over training in the bring-your-own
format, and analyses it in memory (nnsrm.compare) and through the files
(nnsrm register, stage 3, figures): both routes must agree, and at the last
checkpoint the shared-space iRSM must match the wRSM better than the native one.
"""

import json

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT as REPO

EXAMPLE = REPO / "examples" / "sklearn_seeds.ipynb"
MARGIN = 0.3  # shared minus native r(iRSM, wRSM) at the last checkpoint, at least


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(EXAMPLE, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += f"\nOUT = {str(tmp_path_factory.mktemp('sklearn_seeds'))!r}"  # outputs under pytest's tmp
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}},
                   extra_arguments=["--IPKernelApp.log_level=ERROR"]).execute()
    return nb


def _stream(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream")


def test_sklearn_seeds_shared_space_beats_native(executed):
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    text = _stream(executed)
    assert "the command line and nnsrm.compare give the same numbers" in text
    line = next(line for line in text.splitlines() if line.startswith("NNSRM_EXAMPLE_RESULT "))
    result = json.loads(line.split(" ", 1)[1])
    assert sorted(result) == ["hidden1", "hidden2"]
    for layer, r in result.items():
        assert r["shared"] > r["native"] + MARGIN, (layer, r)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the figures


def test_examples_are_clean_in_the_repository():
    """Committed example notebooks carry no outputs and start with a parameters cell."""
    for path in sorted((REPO / "examples").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        assert "parameters" in code[0].metadata.get("tags", []), path.name
