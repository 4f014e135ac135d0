"""XOR data, the 2-50-1 sigmoid network (Keras 3) and copies of its hidden activity.

Everything the simulation needs below the analysis (docs/simulation.md):

- :func:`make_xor_data` — four Gaussian clouds at (±1, ±1), label = quadrant parity
  (with ``offset=ORIGINAL_OFFSET``, the original code's clouds at (0, 0), (2, 2),
  (2, 0), (0, 2));
- :func:`build_xor_net`, :func:`train_xor_net` — 2 inputs → ``n_hidden`` sigmoid
  units → 1 linear output, mean squared error, Adam, full-batch epochs (Keras'
  or, with ``init="torch"``, the original code's PyTorch initialisation);
- :func:`hidden_activity` — the hidden layer's response, **units × images**;
- :func:`make_transforms`, :func:`copy_activity` — copies of the hidden activity,
  each ``Q_i @ H (+ noise)`` with ``Q_i`` a random permutation matrix or a random
  orthogonal matrix (uniform over O(n), or with ``orthogonal="qr_uniform"`` the
  original code's Q factor of a uniform [0, 1) matrix, see
  :func:`qr_uniform_orthogonal`); :func:`permute_hidden_units` builds the permuted *network*
  itself (the original code's way), used by the tests to show the two agree.

Training under the JAX backend runs all epochs as one jitted ``lax.scan`` over
Keras' ``stateless_call`` and ``Adam.stateless_apply`` (compiled once per process
and shape); other backends fall back to ``model.fit``. Keras is imported only by
the functions that need it.
"""

from __future__ import annotations

import functools
import os

import numpy as np

# (x1, x2) centre of each cloud, in the order the data are returned; images are
# grouped by cloud, and the two label-0 clouds come first (as in the original code).
CLOUD_CENTRES = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
TRANSFORMS = ("orthogonal", "permutation")
#: How :func:`make_transforms` draws orthogonal matrices: Haar (ours) or the original code's QR of U[0, 1).
ORTHOGONAL_METHODS = ("haar", "qr_uniform")
#: The original code drew the clouds' noise with mean 1 (``torch.normal(ones, 0.3)``), moving every
#: cloud by (+1, +1): centres (2, 0), (0, 2), (2, 2), (0, 0).
ORIGINAL_OFFSET = 1.0
TRAIN_METHODS = ("auto", "jax", "fit")
#: Weight initialisations of :func:`build_xor_net`: Keras' defaults (ours) or PyTorch's (the original code's).
INITS = ("glorot", "torch")


def _keras():
    """Import Keras with JAX as the default backend (an explicit KERAS_BACKEND wins)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    return keras


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_nonnegative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


# --------------------------------------------------------------------------- data


def make_xor_data(n_per_cloud: int = 50, sigma: float = 0.3, rng=None, offset: float = 0.0):
    """Draw the XOR data: four Gaussian clouds at (±1, ±1) (plus ``offset``).

    Parameters
    ----------
    n_per_cloud : int
        Points per cloud (the paper: 50, so 200 points).
    sigma : float
        Standard deviation of each cloud, per coordinate (the paper: 0.3).
    rng : numpy.random.Generator or int or None
        Source of randomness.
    offset : float, default 0
        Added to both coordinates of every point. The original code's noise had
        mean 1, i.e. ``offset=ORIGINAL_OFFSET``: clouds at (2, 0), (0, 2),
        (2, 2), (0, 0), not centred on the origin.

    Returns
    -------
    x : ndarray, shape (4 * n_per_cloud, 2), float32
        The points, grouped by cloud in the order of :data:`CLOUD_CENTRES`.
    y : ndarray, shape (4 * n_per_cloud,), float32
        Quadrant parity of the cloud before the offset: 1 where the centre's
        coordinates have the same sign (quadrants I and III), else 0.
    cloud : ndarray, shape (4 * n_per_cloud,), int
        Index of each point's cloud (0-3), for plots.
    """
    _check_positive_int("n_per_cloud", n_per_cloud)
    _check_nonnegative("sigma", sigma)
    if isinstance(offset, bool) or not isinstance(offset, (int, float, np.integer, np.floating)) \
            or not np.isfinite(offset):
        raise ValueError(f"offset must be a finite number, got {offset!r}")
    rng = np.random.default_rng(rng)
    cloud = np.repeat(np.arange(len(CLOUD_CENTRES)), n_per_cloud)
    centres = CLOUD_CENTRES[cloud]  # (n, 2)
    x = centres + offset + sigma * rng.standard_normal(centres.shape)
    y = (np.sign(centres[:, 0]) == np.sign(centres[:, 1])).astype(np.float32)
    return x.astype(np.float32), y, cloud


# ------------------------------------------------------------------------ network


def glorot_uniform(fan_in: int, fan_out: int, rng) -> np.ndarray:
    """Glorot (Xavier) uniform weights, Keras' default kernel initialiser, drawn by numpy."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


def torch_linear_uniform(fan_in: int, fan_out: int, rng) -> tuple:
    """PyTorch's default ``nn.Linear`` initialisation, drawn by numpy: kernel and bias U(±1/sqrt(fan_in)).

    (``kaiming_uniform_(a=sqrt(5))`` gives the kernel bound ``1 / sqrt(fan_in)``.)
    Returns the kernel, shape (fan_in, fan_out), and the bias, shape (fan_out,), float32.
    """
    bound = 1.0 / np.sqrt(fan_in)
    kernel = rng.uniform(-bound, bound, size=(fan_in, fan_out)).astype(np.float32)
    return kernel, rng.uniform(-bound, bound, size=fan_out).astype(np.float32)


def build_xor_net(n_hidden: int = 50, seed: int = 0, init: str = "glorot"):
    """The 2 → ``n_hidden`` sigmoid → 1 linear network, initialised from ``seed``.

    With ``init="glorot"`` kernels are Glorot-uniform and biases zero (Keras'
    defaults); with ``init="torch"``, PyTorch's ``nn.Linear`` defaults, which
    the original code's network had (:func:`torch_linear_uniform`). Either
    is drawn with numpy from ``seed``, so that a seed gives the same initial
    network under every Keras backend. The hidden layer is named ``"hidden"``.
    """
    _check_positive_int("n_hidden", n_hidden)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    keras = _keras()
    inputs = keras.Input(shape=(2,), name="x")
    hidden = keras.layers.Dense(n_hidden, activation="sigmoid", name="hidden")(inputs)
    output = keras.layers.Dense(1, name="output")(hidden)
    model = keras.Model(inputs, output, name="xor_net")
    rng = np.random.default_rng(seed)
    if init == "torch":
        model.get_layer("hidden").set_weights(list(torch_linear_uniform(2, n_hidden, rng)))
        model.get_layer("output").set_weights(list(torch_linear_uniform(n_hidden, 1, rng)))
        return model
    model.get_layer("hidden").set_weights([glorot_uniform(2, n_hidden, rng), np.zeros(n_hidden, np.float32)])
    model.get_layer("output").set_weights([glorot_uniform(n_hidden, 1, rng), np.zeros(1, np.float32)])
    return model


@functools.lru_cache(maxsize=8)
def _jax_trainer(n_hidden: int, n_epochs: int, learning_rate: float):
    """A jitted ``train(trainable, non_trainable, x, y) -> (trainable, losses)``.

    Built once per architecture and optimiser setting; the weights are
    arguments, so every repetition reuses the compiled loop.
    """
    import jax
    import jax.numpy as jnp

    keras = _keras()
    template = build_xor_net(n_hidden, seed=0)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build(template.trainable_variables)
    optimizer_start = [v.value for v in optimizer.variables]  # zero moments, step 0

    def loss_fn(trainable, non_trainable, x, y):
        y_pred, _ = template.stateless_call(trainable, non_trainable, x)  # (n, 1)
        return jnp.mean(jnp.square(y_pred - y))

    @jax.jit
    def train(trainable, non_trainable, x, y):
        def epoch(carry, _):
            trainable, optimizer_vars = carry
            loss, grads = jax.value_and_grad(loss_fn)(trainable, non_trainable, x, y)
            trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
            return (trainable, optimizer_vars), loss

        (trainable, _), losses = jax.lax.scan(epoch, (trainable, optimizer_start), None,
                                              length=n_epochs)
        return trainable, losses

    return train


def train_xor_net(x, y, *, n_hidden: int = 50, n_epochs: int = 1000, learning_rate: float = 0.003,
                  seed: int = 0, method: str = "auto", init: str = "glorot"):
    """Build and train one XOR network on the full batch.

    Parameters
    ----------
    x : ndarray, shape (n_images, 2)
    y : ndarray, shape (n_images,)
        Targets (0 or 1); the loss is the mean squared error of the linear output.
    n_hidden, n_epochs, learning_rate : int, int, float
        The paper: 50 hidden units, 1,000 full-batch epochs of Adam at 0.003.
    seed : int
        Seeds the initial weights (see :func:`build_xor_net`).
    init : {"glorot", "torch"}
        Initialisation of the weights (see :func:`build_xor_net`).
    method : {"auto", "jax", "fit"}
        ``"jax"``: one jitted loop (JAX backend only); ``"fit"``: ``model.fit``
        with batch = all images (any backend, slower); ``"auto"``: ``"jax"``
        under the JAX backend, else ``"fit"``. Both start from the same weights
        and run the same updates; they agree up to floating-point rounding.

    Returns
    -------
    model : keras.Model
        The trained network.
    losses : ndarray, shape (n_epochs,)
        Training loss at each epoch, before that epoch's update.
    """
    _check_positive_int("n_hidden", n_hidden)
    _check_positive_int("n_epochs", n_epochs)
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")
    if method not in TRAIN_METHODS:
        raise ValueError(f"method must be one of {TRAIN_METHODS}, got {method!r}")
    keras = _keras()
    backend = keras.backend.backend()
    if method == "auto":
        method = "jax" if backend == "jax" else "fit"
    if method == "jax" and backend != "jax":
        raise ValueError(f"method='jax' needs the JAX Keras backend, but the backend is {backend!r}")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32).reshape(-1, 1)  # (n_images, 1)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) != len(y):
        raise ValueError(f"x must be (n_images, 2) and y (n_images,), got {x.shape} and {y.shape[:1]}")

    model = build_xor_net(n_hidden, seed=seed, init=init)
    if method == "jax":
        train = _jax_trainer(n_hidden, n_epochs, float(learning_rate))
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        trainable, losses = train(trainable, non_trainable, x, y)
        for variable, value in zip(model.trainable_variables, trainable):
            variable.assign(value)
        return model, np.asarray(losses, dtype=np.float64)

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    history = model.fit(x, y, batch_size=len(x), epochs=n_epochs, shuffle=False, verbose=0)
    return model, np.asarray(history.history["loss"], dtype=np.float64)


def hidden_activity(model, x) -> np.ndarray:
    """The hidden layer's response to ``x``, **units × images** (float64).

    Parameters
    ----------
    model : keras.Model
        A network from :func:`build_xor_net`.
    x : ndarray, shape (n_images, 2)

    Returns
    -------
    ndarray, shape (n_hidden, n_images)
        Transposed once here from Keras' images × units.
    """
    keras = _keras()
    sub = keras.Model(model.input, model.get_layer("hidden").output)
    h = keras.ops.convert_to_numpy(sub(np.asarray(x, dtype=np.float32), training=False))  # (n, units)
    return np.asarray(h, dtype=np.float64).T


def predict(model, x) -> np.ndarray:
    """The network's output for ``x``, shape (n_images,)."""
    keras = _keras()
    return np.asarray(keras.ops.convert_to_numpy(model(np.asarray(x, dtype=np.float32))))[:, 0]


def accuracy(model, x, y) -> float:
    """Fraction of points whose output, thresholded at 0.5, matches the label."""
    return float(np.mean((predict(model, x) > 0.5) == (np.asarray(y) > 0.5)))


def permute_hidden_units(model, perm):
    """A new network whose hidden unit ``i`` is ``model``'s unit ``perm[i]``.

    Permuting the hidden layer's kernel columns and bias, and the output
    kernel's rows, leaves the function unchanged; its hidden activity is
    ``hidden_activity(model, x)[perm]``.
    """
    n_hidden = model.get_layer("hidden").units
    perm = np.asarray(perm)
    if sorted(perm.tolist()) != list(range(n_hidden)):
        raise ValueError(f"perm must be a permutation of range({n_hidden}), got {perm!r}")
    w1, b1 = model.get_layer("hidden").get_weights()  # (2, units), (units,)
    w2, b2 = model.get_layer("output").get_weights()  # (units, 1), (1,)
    clone = build_xor_net(n_hidden, seed=0)
    clone.get_layer("hidden").set_weights([w1[:, perm], b1[perm]])
    clone.get_layer("output").set_weights([w2[perm], b2])
    return clone


# ------------------------------------------------------------------------- copies


def random_orthogonal(n: int, rng=None) -> np.ndarray:
    """A random orthogonal matrix, uniform (Haar) over O(n), shape (n, n)."""
    _check_positive_int("n", n)
    rng = np.random.default_rng(rng)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))  # the sign fix makes the distribution Haar


def qr_uniform_orthogonal(n: int, rng=None) -> np.ndarray:
    """The original code's "random" orthogonal matrix: the Q of ``numpy.linalg.qr`` of a U[0, 1) matrix.

    Orthogonal, but not uniform over O(n): every column of the uniform
    matrix lies in the positive orthant, so the first column of Q is (up to
    LAPACK's sign, the same in every draw) a positive vector about 30 degrees
    from the all-ones direction (cosine about 0.87). All copies therefore
    map the units' common mean direction alike: rotated copies of activity
    with a large mean (sigmoid units) stay similar in the native space.
    Shape (n, n).
    """
    _check_positive_int("n", n)
    rng = np.random.default_rng(rng)
    q, _ = np.linalg.qr(rng.random((n, n)))
    return q


def random_permutation_matrix(n: int, rng=None) -> np.ndarray:
    """A random permutation matrix ``P`` (``P @ H == H[perm]``), shape (n, n)."""
    _check_positive_int("n", n)
    rng = np.random.default_rng(rng)
    return np.eye(n)[rng.permutation(n)]


def make_transforms(kind: str, n_units: int, n_copies: int, rng=None, orthogonal: str = "haar") -> list:
    """``n_copies`` random transforms of the hidden units, each (n_units, n_units).

    Parameters
    ----------
    kind : {"orthogonal", "permutation"}
    n_units, n_copies : int
    rng : numpy.random.Generator or int or None
    orthogonal : {"haar", "qr_uniform"}, default "haar"
        How orthogonal matrices are drawn: :func:`random_orthogonal` (uniform
        over O(n)) or :func:`qr_uniform_orthogonal` (the original code's).
    """
    if kind not in TRANSFORMS:
        raise ValueError(f"kind must be one of {TRANSFORMS}, got {kind!r}")
    if orthogonal not in ORTHOGONAL_METHODS:
        raise ValueError(f"orthogonal must be one of {ORTHOGONAL_METHODS}, got {orthogonal!r}")
    _check_positive_int("n_copies", n_copies)
    rng = np.random.default_rng(rng)
    if kind == "permutation":
        draw = random_permutation_matrix
    else:
        draw = random_orthogonal if orthogonal == "haar" else qr_uniform_orthogonal
    return [draw(n_units, rng) for _ in range(n_copies)]


def copy_activity(h, transforms, noise: float = 0.0, rng=None) -> list:
    """Copies ``Q_i @ h + noise * Z_i`` of one network's activity.

    Parameters
    ----------
    h : ndarray, shape (n_units, n_images)
    transforms : list of ndarray, each (n_units, n_units)
    noise : float
        Standard deviation of the additive Gaussian noise (0: exact copies).
    rng : numpy.random.Generator or int or None
        Draws ``Z_i`` (standard normal, one per copy); with the same ``rng``
        state, copies at different noise levels share the same ``Z_i``.

    Returns
    -------
    list of ndarray, each (n_units, n_images)
    """
    _check_nonnegative("noise", noise)
    h = np.asarray(h, dtype=np.float64)
    rng = np.random.default_rng(rng)
    copies = []
    for q in transforms:
        z = rng.standard_normal(h.shape)  # drawn even at noise 0, to keep the streams aligned
        copies.append(q @ h + noise * z if noise else q @ h)
    return copies
