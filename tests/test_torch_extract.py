"""nnsrm.torch_extract: forward hooks over a DataLoader write the bring-your-own format (needs PyTorch).

PyTorch is not a dependency of nnsrm: without it these tests are reported as
skipped. Three seeds of a small MLP on random "images", recorded before and
after a few SGD steps, must give the arrays a manual forward pass gives, in
a folder that ``nnsrm register`` accepts.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional: pip install torch)")

import nnsrm  # noqa: E402
from nnsrm.errors import UsageError  # noqa: E402
from nnsrm.manifest import register_source  # noqa: E402
from nnsrm.torch_extract import extract, load_weights  # noqa: E402

pytestmark = pytest.mark.torch

N_IMAGES, N_FEATURES, N_CLASSES = 48, 10, 3
LAYERS = ["1", "3"]  # the two ReLUs of the Sequential below
ATOL = 1e-6  # float32 forward passes, batched vs whole


def make_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 8), torch.nn.ReLU(), torch.nn.Linear(8, 6),
                               torch.nn.ReLU(), torch.nn.Linear(6, N_CLASSES))


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(N_IMAGES) % N_CLASSES
    x = torch.randn(N_IMAGES, N_FEATURES, generator=g) + y[:, None].float()
    return x, y


def loader_of(x, y, shuffle=False):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=20, shuffle=shuffle)


def train_steps(model, x, y, steps=5):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_extract_writes_the_format_and_registers(tmp_path, data):
    x, y = data
    out = tmp_path / "acts"
    for seed in range(3):
        model = make_model(seed)
        paths = extract(model, loader_of(x, y), LAYERS, out, f"seed{seed}", 0)
        with torch.no_grad():
            hidden1 = model[1](model[0](x)).numpy()
        np.testing.assert_allclose(np.load(paths["1"]), hidden1, atol=ATOL)
        assert model.training  # the mode is restored
        train_steps(model, x, y)
        torch.save(model.state_dict(), tmp_path / f"seed{seed}.pt")
        reloaded = load_weights(make_model(99), tmp_path / f"seed{seed}.pt")  # weights_only=True
        paths = extract(reloaded, loader_of(x, y), LAYERS, out, f"seed{seed}", 3)
        with torch.no_grad():
            np.testing.assert_allclose(np.load(paths["3"]), model[:4](x).numpy(), atol=ATOL)
        assert np.load(paths["3"]).shape == (N_IMAGES, 6) and np.load(paths["3"]).dtype == np.float32
    assert (out / "layers.txt").read_text().split() == LAYERS
    np.testing.assert_array_equal(np.load(out / "labels.npy"), y.numpy())
    assert sorted(p.name for p in (out / "seed1").iterdir()) == ["epoch_0", "epoch_3"]

    reg = register_source(out, tmp_path / "root", "random", "torch_mlp")
    assert reg.n_networks == 3 and reg.checkpoints == [0, 3] and reg.layers == LAYERS
    acts = {f"seed{s}": {c: {name: np.load(out / f"seed{s}" / f"epoch_{c}" / f"{name}.npy") for name in LAYERS}
                         for c in (0, 3)} for s in range(3)}
    df = nnsrm.compare(acts, y.numpy(), engine="fast")
    assert sorted(df.epoch.unique()) == [0, 3] and df.layer.unique().tolist() == LAYERS


def test_bad_use_is_refused(tmp_path, data):
    x, y = data
    model = make_model(0)
    with pytest.raises(ValueError, match=r"the loader shuffles \(shuffle=True\).*use shuffle=False"):
        extract(model, loader_of(x, y, shuffle=True), LAYERS, tmp_path, "seed0", 0)
    with pytest.raises(ValueError, match=r"no module named 'fc' in the model; names look like \['0', '1'"):
        extract(model, loader_of(x, y), ["fc"], tmp_path, "seed0", 0)
    extract(model, loader_of(x, y), LAYERS, tmp_path, "seed0", 0)
    with pytest.raises(UsageError, match=r"labels.npy holds other labels than this extraction's images"):
        extract(make_model(1), loader_of(x.flip(0), y.flip(0)), LAYERS, tmp_path, "seed1", 0)
    assert not (tmp_path / "seed1" / "epoch_0").exists() or not any((tmp_path / "seed1" / "epoch_0").glob("*.npy"))
    with pytest.raises(UsageError, match=r"layers.txt lists other layers"):
        extract(make_model(1), loader_of(x, y), ["3"], tmp_path, "seed1", 0)


def test_pickled_checkpoints_are_refused(tmp_path):
    """load_weights never unpickles arbitrary objects: a whole pickled module is refused."""
    model = make_model(0)
    torch.save(model, tmp_path / "whole.pt")  # pickles the module class
    with pytest.raises(Exception, match=r"[Ww]eights only load failed|weights_only"):
        load_weights(make_model(0), tmp_path / "whole.pt")
