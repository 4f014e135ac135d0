"""make_figures.py draws every figure (in-process, or by executing the notebooks); missing inputs are one line.

The results root is a fixture analysed by the real stage 3 (tests/figures_fixture.py):
two conditions, no network trained. By default make_figures.py draws in its own
process with the functions of nnsrm.figure_set; with --notebooks it executes
show_rsa.ipynb and show_srm.ipynb in real Jupyter kernels (nbclient), which call
the same functions, their parameters passed as NNSRM_* environment variables.
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
    """make_figures.py run once on the fixture (in-process drawing), into its own output folder."""
    out = tmp_path_factory.mktemp("figures")
    proc = run_script("make_figures.py", "--root", analysed_root, "--out", out, *GIF_ARGS, timeout=600)
    return proc, out


def _expected(analysed_root, out):
    from nnsrm import figure_set

    ctx = figure_set.context(analysed_root, "digits", "conv", figures=out)
    return figure_set.expected_files(ctx)


def test_every_figure_function_draws_from_the_analysed_fixture(analysed_root):
    """Fast sibling of the script test: every figure of make_figures.py, drawn from real stage-3 files, not saved."""
    from nnsrm import figure_set

    ctx = figure_set.context(analysed_root, "digits", "conv", figures="none")
    assert ctx.out is None and (ctx.epoch, ctx.layer, ctx.output_layer) == (2, "dense1", "logits")
    for group in ("rsa", "srm"):
        for fn in figure_set.GROUPS[group]:
            drawn = fn(ctx)
            figs = drawn if isinstance(drawn, list) else [drawn]
            assert figs and all(fig.axes for fig in figs), fn.__name__
            for fig in figs:
                fig.clear()
    # The original's trajectory cells: the first and last epochs × first, second-to-last and last layers.
    assert figure_set.trajectory_cells(ctx) == [(e, layer) for e in (0, 2) for layer in ("pool1", "dense1", "logits")]


@pytest.mark.slow
def test_make_figures_writes_every_figure(figures, analysed_root):
    proc, out = figures
    assert proc.returncode == 0, proc.stderr
    expected = _expected(analysed_root, out)
    assert len(expected) == 2 * (9 + 4) + 6  # 13 figures as PNG and PDF, 6 animations
    assert f"{len(expected)} files in {out}" in proc.stdout
    for path in expected:
        assert path.is_file() and path.stat().st_size > 0, f"{path.name} missing or empty"
        head = path.read_bytes()[:6]
        if path.suffix == ".pdf":
            assert head[:4] == b"%PDF", path.name
        elif path.suffix == ".png":
            with Image.open(path) as im:
                assert im.format == "PNG" and min(im.size) > 200, path.name
        else:  # an animated GIF written through pillow
            with Image.open(path) as im:
                assert im.format == "GIF" and im.n_frames == 3, path.name
    # The original's trajectory cells: the first and last epochs × first, second-to-last and last layers.
    gifs = sorted(p.name for p in expected if p.suffix == ".gif")
    assert gifs == sorted(f"digits_conv_trajectories_e{e:03d}_{layer}.gif" for e in (0, 2)
                          for layer in ("pool1", "dense1", "logits"))


def _figure_calls(name):
    """The ``fs.<function>`` names a notebook's code cells call, in order (IPython magics dropped)."""
    import ast

    nb = nbformat.read(REPO / name, as_version=4)
    calls = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse("\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith("%")))
        calls += [node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
                  and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                  and node.func.value.id == "fs"]
    return calls


def test_notebooks_call_every_figure_function_of_their_group():
    """Fast sibling of the executed-notebooks test: the notebooks call exactly make_figures.py's functions."""
    from nnsrm import figure_set

    for name, group in (("show_rsa.ipynb", "rsa"), ("show_srm.ipynb", "srm")):
        assert nf.NOTEBOOK_GROUPS[name] == group
        calls = [c for c in _figure_calls(name) if c != "context"]
        assert calls == [fn.__name__ for fn in figure_set.GROUPS[group]], name
        assert _figure_calls(name)[0] == "context"  # the first call loads what the figures need


@pytest.mark.slow
def test_executed_notebooks_write_the_same_figures(analysed_root, tmp_path):
    """The notebooks, executed in kernels, call the same figure functions: no errors, every file written."""
    out = tmp_path / "figs"
    proc = run_script("make_figures.py", "--root", analysed_root, "--out", out, "--notebooks", *GIF_ARGS,
                      timeout=600)
    assert proc.returncode == 0, proc.stderr
    for name in ("show_rsa.ipynb", "show_srm.ipynb"):
        nb = nbformat.read(out / "notebooks" / f"digits_conv_{name}", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3, name
    assert all(p.is_file() for p in _expected(analysed_root, out))
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
    (("--only", "show_x.ipynb"), r"argument --only: invalid choice: 'show_x.ipynb'"),
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
    for flag in ("--root", "--data", "--model", "--epoch", "--layer", "--out", "--gif-seconds", "--notebooks",
                 "--include-output"):
        assert flag in proc.stdout
