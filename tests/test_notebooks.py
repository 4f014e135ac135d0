"""make_figures.py executes show_rsa.ipynb and show_srm.ipynb and writes every figure; missing inputs are one line.

The results root is a fixture analysed by the real stage 3 (tests/figures_fixture.py):
two conditions, no network trained. The notebooks run in real Jupyter kernels
(nbclient), their parameters passed as NNSRM_* environment variables.
"""


import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from PIL import Image

from conftest import ROOT as REPO
from conftest import run_script
from figures_fixture import CONDITIONS, make_analysed_root, write_stage2
from nnsrm import figures as nf

GIF_ARGS = ("--gif-seconds", "1", "--gif-fps", "3")  # 3 frames per GIF: the animation path, quickly


@pytest.fixture(scope="session")
def analysed_root(tmp_path_factory):
    """Two analysed conditions (digits × conv, digits × mlp); shared, read-only."""
    return make_analysed_root(tmp_path_factory.mktemp("analysed"))


@pytest.fixture(scope="session")
def figures(analysed_root, tmp_path_factory):
    """make_figures.py run once on the fixture, into its own output folder."""
    out = tmp_path_factory.mktemp("figures")
    proc = run_script("make_figures.py", "--root", analysed_root, "--out", out, *GIF_ARGS, timeout=600)
    return proc, out


def test_make_figures_writes_every_figure(figures):
    proc, out = figures
    assert proc.returncode == 0, proc.stderr
    expected = nf.expected_files(out, "digits", "conv")
    assert len(expected) == 16
    for path in expected:
        assert path.is_file() and path.stat().st_size > 0, f"{path.name} missing or empty"
        assert path.name in proc.stdout
    for path in expected:
        head = path.read_bytes()[:6]
        if path.suffix == ".pdf":
            assert head[:4] == b"%PDF", path.name
        elif path.suffix == ".png":
            with Image.open(path) as im:
                assert im.format == "PNG" and min(im.size) > 200, path.name
        else:  # an animated GIF written through pillow
            with Image.open(path) as im:
                assert im.format == "GIF" and im.n_frames == 3, path.name


def test_executed_notebooks_are_saved_without_errors(figures, analysed_root):
    proc, out = figures
    assert proc.returncode == 0, proc.stderr
    for name in ("show_rsa.ipynb", "show_srm.ipynb"):
        nb = nbformat.read(out / "notebooks" / f"digits_conv_{name}", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2, name
    # Fig. 4 has one column per analysed condition under the root.
    nb = nbformat.read(out / "notebooks" / "digits_conv_show_rsa.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "[('digits', 'conv'), ('digits', 'mlp')]" in text
    assert sorted(nf.analysed_conditions(analysed_root)) == sorted(CONDITIONS)


def test_notebooks_are_clean_in_the_repository():
    """Committed notebooks carry no outputs, start with a parameters cell and only call functions."""
    for name in ("show_rsa.ipynb", "show_srm.ipynb"):
        nb = nbformat.read(REPO / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), name
        assert "parameters" in code[0].metadata.get("tags", []), name
        for var in ("ROOT", "DATA", "MODEL"):
            assert f"\n{var} = " in "\n" + code[0].source, (name, var)
        assert not any(line.lstrip().startswith(("def ", "class ", "for epoch", "np.corrcoef"))
                       for c in code for line in c.source.splitlines()), name


@pytest.fixture(scope="session")
def unanalysed_root(tmp_path_factory):
    """Stage-2 outputs of digits × conv, but no analyses."""
    root = tmp_path_factory.mktemp("unanalysed")
    write_stage2(root, "digits", "conv", {"dense1": 8, "logits": 10}, n_subjects=2, n_epochs=1)
    return root


@pytest.mark.parametrize("case, args, message", [
    ("no analyses", (), r"no analyses for digits×conv under {root}: run run_analyses.py --data digits "
                        r"--model conv --root {root} first"),
    ("untrained condition", ("--model", "mlp"), r"no results for digits×mlp under {root} \(analysed there: "
                                                r"none\): run train_cifar.py"),
])
def test_make_figures_before_the_analyses_is_one_line(unanalysed_root, case, args, message):
    proc = run_script("make_figures.py", "--root", unanalysed_root, *args)
    assert proc.returncode == 2, case
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("make_figures.py: error: "), proc.stderr
    assert re.search(message.format(root=re.escape(str(unanalysed_root))), lines[0]), lines[0]
    assert "Traceback" not in proc.stderr and not (unanalysed_root / "figures").exists()


@pytest.mark.parametrize("args, message", [
    (("--root", "{missing}"), "results root {missing} does not exist: run train_cifar.py"),
    (("--epoch", "7"), r"epoch 7 was not analysed; analysed epochs: \[0, 1, 2\]"),
    (("--layer", "fc"), r"layer 'fc' was not analysed; analysed layers: \['pool1', 'dense1', 'logits'\]"),
    (("--gif-fps", "0"), "argument --gif-fps: expected a positive integer"),
])
def test_make_figures_bad_input_is_one_line(analysed_root, tmp_path, args, message):
    missing = tmp_path / "nowhere"
    args = [a.format(missing=missing) for a in args]
    root_args = [] if "--root" in args else ["--root", analysed_root]
    proc = run_script("make_figures.py", *root_args, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message.format(missing=re.escape(str(missing))), lines[0]), proc.stderr


def test_notebook_before_the_analyses_names_the_stage(unanalysed_root, monkeypatch):
    """Run directly (not through make_figures.py), a notebook stops at its load cell with the one-line reason."""
    monkeypatch.setenv("NNSRM_ROOT", str(unanalysed_root))
    monkeypatch.setenv("NNSRM_FIGURES", "none")
    nb = nbformat.read(REPO / "show_rsa.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "MissingInputError"  # nnsrm.errors: a FileNotFoundError, and bad input
    assert info.value.evalue.startswith("no analyses for digits×conv under ")
    assert info.value.evalue.endswith(" first") and "run_analyses.py" in info.value.evalue
    assert "numpy" not in info.value.evalue


def test_make_figures_help():
    proc = run_script("make_figures.py", "--help")
    assert proc.returncode == 0
    for flag in ("--root", "--data", "--model", "--epoch", "--layer", "--out", "--gif-seconds"):
        assert flag in proc.stdout
