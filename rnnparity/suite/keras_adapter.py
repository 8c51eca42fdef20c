"""The only module that imports Keras (``keras`` 3 or ``tf_keras``/``tf.keras`` 2).

It is imported lazily, by :func:`rnnparity.from_keras`, by the CLI and by the tests; plain
``import rnnparity`` never loads TensorFlow.

Names, here and in :mod:`rnnparity.files`: ``keras_version`` is Keras's major version, 2 or 3
(as on the twins); ``keras_release`` the full version string (``"3.12.0"``); a *flavor* is how
the command line names a Keras to load (``"keras3"`` or ``"tf-keras"``, :func:`flavor_for`).
Reports keep their own keys (see :func:`rnnparity.suite.report.environment`).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from rnnparity.bidirectional import Bidirectional
from rnnparity.conv_lstm import ConvLSTMCell
from rnnparity.layout import KERAS_CLASS_NAME
from rnnparity.rnn import RNN, RecurrentLayer, flatten_nested
from rnnparity.stacked import StackedRNNCells
from rnnparity.twin_classes import CONV_TWIN_BY_KERAS_NAME, TWIN_BY_KERAS_NAME, TWIN_CELL_BY_KERAS_NAME

# The flavor that loads each Keras version.
FLAVOR_OF_VERSION = {3: "keras3", 2: "tf-keras"}
FLAVORS = tuple(FLAVOR_OF_VERSION.values())


def flavor_for(keras_version: int) -> str:
    """The flavor that loads Keras ``keras_version``: ``"keras3"`` for 3, ``"tf-keras"`` for 2."""
    if keras_version not in FLAVOR_OF_VERSION or isinstance(keras_version, bool):
        raise ValueError(f"keras_version must be 2 or 3; got {keras_version!r}")
    return FLAVOR_OF_VERSION[keras_version]


@dataclass(frozen=True)
class KerasHandle:
    """One importable Keras: the module whose ``.layers`` builds layers, and what it is."""

    module: Any
    package: str  # "keras" or "tf_keras"
    keras_release: str  # "3.12.0", "2.21.0"
    keras_version: int  # 2 or 3
    backend: str

    @property
    def environment(self) -> dict[str, Any]:
        """What known_differences needs to know about this Keras, in the report's keys."""
        return {"keras_major": self.keras_version, "keras_backend": self.backend, "jax_x64": jax_x64_enabled(self.backend)}

    @property
    def flavor(self) -> str:
        return flavor_for(self.keras_version)

    def describe(self) -> str:
        return f"{self.package} {self.keras_release} (Keras {self.keras_version}, backend {self.backend})"


def jax_x64_enabled(backend: str) -> bool:
    if backend != "jax":
        return False
    import jax

    return bool(getattr(jax.config, "jax_enable_x64"))  # noqa: B009 (set at run time; the stubs lack it)


def _version_of_release(release: str) -> int:
    return int(release.split(".")[0])


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (None when absent), without importing it."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def tensorflow_version() -> str | None:
    """The TensorFlow version, or None without TensorFlow; never imports TensorFlow.

    When TensorFlow is already imported, its ``__version__`` (what actually runs); otherwise
    the installed distribution's metadata (``tensorflow-cpu``, then ``tensorflow``), so that
    headers printed before Keras loads (the pytest plugin's, ``rnnparity check``'s) cost no
    TensorFlow import.
    """
    module = sys.modules.get("tensorflow")
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    return package_version("tensorflow-cpu") or package_version("tensorflow")


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter (CUDA probing on a CPU machine) is noise here;
    # a user who set the variable keeps their own value.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_keras(flavor: str = "auto") -> KerasHandle:
    """Import the requested Keras.

    ``keras3``: the ``keras`` package, version 3. ``tf-keras``: Keras 2, from ``tf_keras``
    or, on TensorFlow <= 2.15, ``tf.keras``. ``auto``: whatever ``tf.keras`` resolves to
    (Keras 3 when TensorFlow is absent).
    Raises ``ValueError`` for an unknown flavor and ``ImportError`` when it is not installed.
    """
    _quiet_tensorflow()
    if flavor == "auto":
        flavor = _auto_flavor()
    if flavor == "keras3":
        keras = importlib.import_module("keras")
        release = str(keras.__version__)
        if _version_of_release(release) != 3:
            raise ImportError(f"--keras keras3 needs the keras 3 package; the installed keras is {release}")
        return KerasHandle(keras, "keras", release, 3, str(keras.backend.backend()))
    if flavor == "tf-keras":
        try:
            module = importlib.import_module("tf_keras")
            return KerasHandle(module, "tf_keras", str(module.__version__), 2, "tensorflow")
        except ImportError:
            pass
        keras = importlib.import_module("keras")
        release = str(keras.__version__)
        if _version_of_release(release) == 2:
            return KerasHandle(keras, "keras", release, 2, "tensorflow")
        raise ImportError("--keras tf-keras needs the tf-keras package (or TensorFlow <= 2.15 with its own Keras 2)")
    raise ValueError(f"keras flavor must be one of {(*FLAVORS, 'auto')}; got {flavor!r}")


def _auto_flavor() -> str:
    try:
        import tensorflow as tf
    except ImportError:
        return "keras3"
    if os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true"):
        return "tf-keras"
    module = tf.keras.layers.LSTM.__module__
    if module.startswith("tf_keras"):
        return "tf-keras"
    keras = importlib.import_module("keras")
    return "keras3" if _version_of_release(str(keras.__version__)) == 3 else "tf-keras"


def keras_version_of(obj: Any) -> int:
    """2 or 3: which Keras the layer object ``obj`` comes from."""
    top = type(obj).__module__.split(".")[0]
    module = sys.modules.get(top)
    release = getattr(module, "__version__", None)
    if top == "tf_keras":
        return 2
    if top == "keras" and release:
        return _version_of_release(str(release))
    if top in ("tensorflow", "tf_keras"):
        return 2
    raise TypeError(f"{type(obj).__module__}.{type(obj).__name__} is not a Keras layer from keras or tf_keras")


SUPPORTED_CLASSES = (
    *sorted(TWIN_BY_KERAS_NAME),
    "RNN",
    "Bidirectional",
    *sorted(TWIN_CELL_BY_KERAS_NAME),
    "StackedRNNCells",
    *sorted(CONV_TWIN_BY_KERAS_NAME),
    "ConvLSTMCell",
)


def from_keras(layer: Any) -> Any:
    """A twin with the Keras layer's configuration and a copy of its weights.

    Accepts ``LSTM``, ``GRU``, ``SimpleRNN``, ``RNN`` around a supported cell,
    ``Bidirectional`` around any of those, and the cells ``LSTMCell``, ``GRUCell``,
    ``SimpleRNNCell``, ``StackedRNNCells``; ``ConvLSTM1D/2D/3D`` (on their own or inside
    ``Bidirectional``) and their ``ConvLSTMCell``; from Keras 3 or Keras 2 (``tf_keras``/
    ``tf.keras``). The twin emulates the Keras it came from (``keras_version``), which
    decides the ``hard_sigmoid`` formula and the return types. A stateful layer's carried
    states are copied too. Anything else raises ``TypeError`` naming the class (and, inside
    a wrapper, where it sits).
    """
    return _from_keras(layer, "", "")


def _from_keras(layer: Any, where: str, parent: str) -> Any:
    """``parent``: the class of the wrapper ``layer`` sits in ("" at the top)."""
    class_name = type(layer).__name__
    inside = f" (in {where})" if where else ""
    if class_name not in SUPPORTED_CLASSES:
        raise TypeError(f"from_keras supports {list(SUPPORTED_CLASSES)}; got {type(layer).__module__}.{class_name}{inside}")
    conv = class_name in CONV_TWIN_BY_KERAS_NAME or class_name == "ConvLSTMCell"
    if conv and parent not in ("", "Bidirectional"):
        raise TypeError(
            f"from_keras supports ConvLSTM1D/2D/3D on their own or inside Bidirectional, not inside {parent}; "
            f"got {type(layer).__module__}.{class_name}{inside}"
        )
    keras_version = keras_version_of(layer)
    if not getattr(layer, "built", False) or not layer.get_weights():
        raise ValueError(
            f"the Keras {class_name} {layer.name!r}{inside} is not built yet; call it on an input (or build it) first"
        )
    here = f"{where} > {class_name} {layer.name!r}" if where else f"{class_name} {layer.name!r}"
    if class_name == "Bidirectional":
        forward = _from_keras(layer.forward_layer, here, class_name)
        backward = _from_keras(layer.backward_layer, here, class_name)
        twin = Bidirectional(forward, merge_mode=layer.merge_mode, backward_layer=backward, dtype=_dtype_of(layer))
        # The wrapper starts from a fresh copy of ``forward``; carry Keras's states over.
        _copy_carried_states(layer.forward_layer, twin.forward_layer)
        return twin
    if class_name == "StackedRNNCells":
        return StackedRNNCells([_from_keras(cell, here, class_name) for cell in layer.cells])
    if class_name == "RNN":
        cell = _from_keras(layer.cell, here, class_name)
        config = dict(layer.get_config())
        for key in ("cell", "dtype", "name", "trainable"):
            config.pop(key, None)
        rnn_twin = RNN(cell, backend=_backend_of(keras_version), **config)
        _copy_carried_states(layer, rnn_twin)
        return rnn_twin

    _refuse_custom_activations(layer, class_name, keras_version, inside)
    config = dict(layer.get_config())
    config.pop("cell", None)
    config.pop("dtype", None)
    dtype = _dtype_of(layer)
    backend = _backend_of(keras_version)
    config = twin_activations(config, backend)
    if class_name == "ConvLSTMCell":
        conv_cell = ConvLSTMCell(rank=int(layer.rank), dtype=dtype, keras_version=keras_version, **config)
        conv_cell.set_weights(layer.get_weights())
        return conv_cell
    if class_name in CONV_TWIN_BY_KERAS_NAME:
        conv_class: Any = CONV_TWIN_BY_KERAS_NAME[class_name]
        conv_twin = conv_class(dtype=dtype, keras_version=keras_version, backend=backend, **config)
        conv_twin.set_weights(layer.get_weights())
        _copy_carried_states(layer, conv_twin)
        return conv_twin
    if class_name in TWIN_CELL_BY_KERAS_NAME:
        cell_twin = TWIN_CELL_BY_KERAS_NAME[class_name](dtype=dtype, keras_version=keras_version, **config)
        cell_twin.set_weights(layer.get_weights())
        return cell_twin
    layer_class: Any = TWIN_BY_KERAS_NAME[class_name]
    layer_twin: RecurrentLayer = layer_class(dtype=dtype, keras_version=keras_version, backend=backend, **config)
    layer_twin.set_weights(layer.get_weights())
    _copy_carried_states(layer, layer_twin)
    return layer_twin


def _dtype_of(layer: Any) -> str:
    policy = getattr(layer, "dtype_policy", None)
    if policy is not None and getattr(policy, "name", None):
        return str(policy.name)
    return str(getattr(layer, "dtype", None) or "float32")


def _copy_carried_states(keras_layer: Any, twin: RecurrentLayer) -> None:
    if not twin.stateful:
        return
    states = getattr(keras_layer, "states", None)
    if states is None:
        return
    leaves = flatten_nested(states)
    if leaves and all(s is not None for s in leaves):
        twin.reset_state(twin.cell.pack_layer_states([to_numpy(s) for s in leaves]))


def _refuse_custom_activations(layer: Any, class_name: str, keras_version: int, inside: str = "") -> None:
    """Check the activations by function name *before* get_config, which would try to
    serialize (and warn about) a custom function."""
    from rnnparity.activations import activations_for

    source = getattr(layer, "cell", layer)
    known = activations_for(keras_version)
    for attribute in ("activation", "recurrent_activation"):
        function = getattr(source, attribute, None)
        if function is None:
            continue
        name = getattr(function, "__name__", None)
        if name not in known:
            raise ValueError(
                f"{class_name} {layer.name!r}{inside} uses a custom {attribute} ({function!r}); from_keras handles named "
                f"Keras {keras_version} activations only ({sorted(known)}) — build the twin directly with a NumPy callable"
            )


@functools.cache
def tensorflow_gelu_form() -> str:
    """Which exact-GELU formula the installed TensorFlow computes: ``"erfc"`` (TF 2.21) or
    ``"erf"`` (TF 2.15). Probed on float64 values, where the two differ in the last bits."""
    import tensorflow as tf

    from rnnparity.activations import gelu, gelu_erf_form

    probe = np.linspace(-4.0, 4.0, 257)
    computed = tf.nn.gelu(tf.constant(probe), approximate=False).numpy()
    if np.array_equal(computed, gelu_erf_form(probe)) and not np.array_equal(computed, gelu(probe)):
        return "erf"
    return "erfc"


def twin_activation(name: Any, backend: str) -> Any:
    """The activation to give a twin for a Keras activation ``name`` on ``backend``: the name
    itself, except ``gelu`` on a TensorFlow that uses the older formula (known_differences)."""
    if name == "gelu" and backend == "tensorflow" and tensorflow_gelu_form() == "erf":
        from rnnparity.activations import gelu_erf_form

        return gelu_erf_form
    return name


def twin_activations(kwargs: dict[str, Any], backend: str) -> dict[str, Any]:
    """``kwargs`` with ``activation``/``recurrent_activation`` resolved by :func:`twin_activation`."""
    resolved = dict(kwargs)
    for name in ("activation", "recurrent_activation"):
        if name in resolved:
            resolved[name] = twin_activation(resolved[name], backend)
    return resolved


def _backend_of(keras_version: int) -> str:
    if keras_version == 2:
        return "tensorflow"
    import keras

    return str(keras.backend.backend())


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "requires_grad"):  # a torch tensor (the torch backend)
        value = value.detach().cpu()
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    if hasattr(value, "value") and hasattr(value.value, "numpy"):
        return np.asarray(value.value.numpy())
    try:
        import keras

        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:
        return np.asarray(value)


def build_layer(
    handle: KerasHandle, kind: str, config: dict[str, Any], input_shape: tuple[int, int, int], weights: list[np.ndarray]
) -> Any:
    """A built Keras layer of ``kind`` with ``config`` and ``weights`` (in Keras layout)."""
    cls = getattr(handle.module.layers, KERAS_CLASS_NAME[kind])
    layer = cls(**config)
    layer.build(input_shape)
    layer.set_weights(weights)
    return layer


def build_conv_lstm(
    handle: KerasHandle, rank: int, config: dict[str, Any], input_shape: tuple[int, ...], weights: list[np.ndarray]
) -> Any:
    """A built Keras ``ConvLSTM{rank}D`` with ``config`` and ``weights`` (in Keras layout)."""
    layer = getattr(handle.module.layers, f"ConvLSTM{rank}D")(**config)
    layer.build((None, *input_shape[1:]))  # not stateful: any batch size
    layer.set_weights(weights)
    return layer


def keras_cell(handle: KerasHandle, kind: str, options: dict[str, Any], dtype: str) -> Any:
    """An unbuilt Keras cell (``LSTMCell``, ``GRUCell``, ``SimpleRNNCell``) of ``kind`` with
    ``options`` (``units`` included)."""
    return getattr(handle.module.layers, f"{KERAS_CLASS_NAME[kind]}Cell")(dtype=dtype, **options)


def build_bidirectional(
    handle: KerasHandle,
    forward: tuple[str, dict[str, Any]],
    merge_mode: str | None,
    backward: tuple[str, dict[str, Any]] | None,
    dtype: str,
    input_shape: tuple[int, int, int],
    weights: list[np.ndarray],
) -> Any:
    """A built Keras ``Bidirectional`` around a ``(kind, options)`` layer, with an explicit
    ``backward`` layer if given, and ``weights`` (forward layer's, then backward layer's)."""
    layers = handle.module.layers
    backward_layer = getattr(layers, KERAS_CLASS_NAME[backward[0]])(**backward[1]) if backward else None
    layer = layers.Bidirectional(
        getattr(layers, KERAS_CLASS_NAME[forward[0]])(**forward[1]),
        merge_mode=merge_mode,
        backward_layer=backward_layer,
        dtype=dtype,
    )
    layer.build(input_shape)
    layer.set_weights(weights)
    return layer


def build_rnn(
    handle: KerasHandle,
    cells: list[tuple[str, dict[str, Any]]],
    stacked: bool,
    options: dict[str, Any],
    dtype: str,
    input_shape: tuple[int, int, int],
    weights: list[np.ndarray],
) -> Any:
    """A built Keras ``RNN`` of one cell (``stacked`` False) or of ``StackedRNNCells`` of
    ``cells`` (``(kind, options)`` each), with ``options`` and ``weights`` (cell by cell)."""
    layers = handle.module.layers
    built = [keras_cell(handle, kind, cell_options, dtype) for kind, cell_options in cells]
    if not stacked and len(built) != 1:
        raise ValueError(f"an RNN of one cell needs one cell; got {len(built)} (stacked=False)")
    cell = layers.StackedRNNCells(built, dtype=dtype) if stacked else built[0]
    layer = layers.RNN(cell, **options, dtype=dtype)
    layer.build(input_shape)
    layer.set_weights(weights)
    return layer


def benchmark_callers(handle: KerasHandle, layer: Any, inputs: np.ndarray, contenders: list[str]) -> dict[str, Any]:
    """Zero-argument callables that run ``layer`` on ``inputs`` the ways Keras users run it:
    ``eager`` (a plain call), ``predict`` (``model.predict`` of a model holding only the
    layer), ``tf_function`` (a graph, no XLA) and ``xla`` (``jit_compile=True``). Inputs
    are converted to a tensor once, outside the timed calls. For ``rnnparity bench``."""
    import tensorflow as tf

    tensor = tf.constant(inputs)
    callers: dict[str, Any] = {}
    if "eager" in contenders:
        callers["eager"] = lambda: layer(tensor)
    if "predict" in contenders:
        keras = handle.module
        model_input = keras.Input(shape=inputs.shape[1:], batch_size=inputs.shape[0], dtype=str(inputs.dtype))
        model = keras.Model(model_input, layer(model_input))
        callers["predict"] = lambda: model.predict(inputs, batch_size=inputs.shape[0], verbose=0)
    if "tf_function" in contenders:
        graph = tf.function(lambda t: layer(t))
        callers["tf_function"] = lambda: graph(tensor)
    if "xla" in contenders:
        compiled = tf.function(lambda t: layer(t), jit_compile=True)
        callers["xla"] = lambda: compiled(tensor)
    return callers


def gradient_caller(handle: KerasHandle, layer: Any, inputs: np.ndarray, output_grads: np.ndarray) -> Any:
    """A zero-argument callable that computes, inside one ``tf.function`` (a graph, as
    Keras's own training step runs), ``tf.GradientTape``'s gradients of ``layer(inputs)``
    given ``output_grads``, w.r.t. the inputs and the trainable weights; it returns them as
    a list of tensors (inputs, then the weights in ``get_weights()`` order). For
    ``rnnparity bench --gradients``."""
    import tensorflow as tf

    x, dy = tf.constant(inputs), tf.constant(output_grads)
    weights = [w.value if handle.keras_version == 3 else w for w in layer.trainable_weights]

    @tf.function
    def tape_gradients(t: Any, g: Any) -> Any:
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(t)
            tape.watch(weights)
            y = layer(t)
        return tape.gradient(y, [t, *weights], output_gradients=g)

    return lambda: tape_gradients(x, dy)


def nested_to_numpy(value: Any) -> Any:
    """Keras results as NumPy, keeping Keras's (possibly nested) tuples and lists."""
    if isinstance(value, tuple):
        return tuple(nested_to_numpy(v) for v in value)
    if isinstance(value, list):
        return [nested_to_numpy(v) for v in value]
    return to_numpy(value)


def _to_keras_tensors(handle: KerasHandle, value: Any) -> Any:
    """NumPy arrays (possibly nested in lists) as tensors Keras 2 accepts; Keras 3 takes NumPy."""
    if handle.keras_version != 2:
        return list(value) if isinstance(value, tuple) else value
    import tensorflow as tf

    return tf.nest.map_structure(tf.constant, value)


def call_layer(
    handle: KerasHandle,
    layer: Any,
    inputs: np.ndarray,
    initial_state: Any = None,
    mask: np.ndarray | None = None,
) -> Any:
    """Call a Keras layer; returns an ndarray, or tuples/lists of ndarrays as Keras packed them.
    ``initial_state`` may be nested (the per-cell states of a stack)."""
    kwargs: dict[str, Any] = {}
    if initial_state is not None:
        kwargs["initial_state"] = _to_keras_tensors(handle, initial_state)
    if mask is not None:
        kwargs["mask"] = _to_keras_tensors(handle, mask)
    return nested_to_numpy(layer(_to_keras_tensors(handle, inputs), **kwargs))


def call_cell(handle: KerasHandle, cell: Any, inputs: np.ndarray, states: Any) -> tuple[np.ndarray, Any]:
    """One step of a Keras cell; returns ``(output, new_states)`` as NumPy, states in Keras's structure."""
    output, new_states = cell(_to_keras_tensors(handle, inputs), _to_keras_tensors(handle, states))
    return to_numpy(output), nested_to_numpy(new_states)


def layer_states(layer: Any) -> list[np.ndarray]:
    """A stateful Keras layer's carried states, flat (nested structures flattened)."""
    return [to_numpy(s) for s in flatten_nested(layer.states)]


def reset_layer_state(handle: KerasHandle, layer: Any) -> None:
    if handle.keras_version == 3:
        layer.reset_state()
    else:
        layer.reset_states()


def load_saved_model(handle: KerasHandle, path: str) -> Any:
    """Load a whole saved model with ``compile=False`` and ``safe_mode=True`` (the caller
    has already refused Lambda layers and unknown classes, see rnnparity.files.verify)."""
    if handle.keras_version == 3:
        return handle.module.saving.load_model(path, compile=False, safe_mode=True)
    return handle.module.models.load_model(path, compile=False, safe_mode=True)


def op_class_names(handle: KerasHandle) -> set[str]:
    """Keras 3's own operation classes (``NotEqual``, ``Add``, ...), which a functional model
    stores as layers when built from ``keras.ops`` calls. Empty for Keras 2."""
    if handle.keras_version != 3:
        return set()
    import inspect
    import pkgutil

    try:
        import keras.src.ops as ops_package
        from keras.src.ops.operation import Operation
    except ImportError:
        return set()
    names: set[str] = set()
    for info in pkgutil.iter_modules(ops_package.__path__):
        if info.name.endswith("_test") or info.name.startswith("_"):
            continue  # Keras's own test modules import pytest plugins
        try:
            module = importlib.import_module(f"keras.src.ops.{info.name}")
        except ImportError:
            continue
        names.update(
            name
            for name, value in vars(module).items()
            if inspect.isclass(value) and issubclass(value, Operation) and value.__module__.startswith("keras.")
        )
    return names


def load_model_from_config(handle: KerasHandle, path: str, config: dict[str, Any]) -> Any:
    """A model built from ``config`` (already scanned) with the weights of the HDF5 file
    ``path`` loaded by Keras's own loader, which converts cuDNN weights on the way
    (see rnnparity.files.legacy.plain_model_config)."""
    if handle.keras_version != 2:
        raise ImportError("only Keras 2 (tf_keras) converts cuDNN weights when loading")
    model = handle.module.models.model_from_config(config)
    model.load_weights(path)
    return model


_CONV_KEYS = ["filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate"]


def _plain_keras_config(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The Keras arguments of a twin's settings that change what a layer computes."""
    keys = ["units", "activation", "use_bias", "return_sequences", "return_state", "go_backwards", "name"]
    keys += {
        "lstm": ["recurrent_activation", "unit_forget_bias"],
        "gru": ["recurrent_activation", "reset_after"],
        "conv_lstm": [*_CONV_KEYS, "recurrent_activation", "unit_forget_bias"],
    }.get(kind, [])
    config = {key: settings[key] for key in keys if key in settings}
    for key in ("activation", "recurrent_activation"):
        if key in config and not isinstance(config[key], str):
            raise ValueError(
                f"{key}={config[key]!r} is a NumPy function, which Keras cannot run; verify needs a named activation"
            )
    config["dtype"] = settings["dtype"]
    return config


def reference_layer(handle: KerasHandle, plan: Any, file: Any, step_shape: tuple[int, ...] | None = None) -> tuple[Any, str]:
    """A built Keras layer configured as the twin of ``plan`` (a rnnparity.files.legacy.TwinPlan) with
    the weights of ``file`` loaded the way that Keras loads them, and how they were loaded.
    ``step_shape`` is the shape of one timestep of the inputs (default ``(input_dim,)``; a
    ConvLSTM needs its spatial axes too)."""
    k = handle.module
    layer_info = plan.layer
    name = layer_info.path.split("/")[-1] if file.layout == "weights" else layer_info.name.replace("/", "_")
    first = layer_info.cells[0]
    class_name = first.class_name if first.kind == "conv_lstm" else KERAS_CLASS_NAME[plan.kind]
    if layer_info.class_name == "Bidirectional":
        forward = getattr(k.layers, class_name)(**_plain_keras_config(plan.kind, plan.cell_settings[0]))
        backward = None
        if plan.wrapper.get("backward_layer"):
            backward = getattr(k.layers, class_name)(**_plain_keras_config(plan.kind, plan.cell_settings[1]))
        layer = k.layers.Bidirectional(forward, merge_mode=plan.wrapper["merge_mode"], backward_layer=backward, name=name)
    elif layer_info.class_name == "RNN":
        cells = []
        for cell, settings in zip(layer_info.cells, plan.cell_settings):
            cell_config = _plain_keras_config(cell.kind, settings)
            for key in ("return_sequences", "return_state", "go_backwards", "name"):
                cell_config.pop(key, None)
            cells.append(getattr(k.layers, f"{KERAS_CLASS_NAME[cell.kind]}Cell")(**cell_config))
        rnn = {key: plan.settings[key] for key in ("return_sequences", "return_state", "go_backwards") if key in plan.settings}
        layer = k.layers.RNN(cells if len(cells) > 1 else cells[0], name=name, **rnn)
    else:
        config = _plain_keras_config(plan.kind, plan.settings)
        config["name"] = name
        layer = getattr(k.layers, class_name)(**config)
    dtype = plan.cell_settings[0]["dtype"]
    inputs = k.Input((None, *(step_shape or (layer_info.input_dim,))), dtype=dtype)
    model = k.Model(inputs, layer(inputs))
    stored = [array for cell in layer_info.cells for array in cell.arrays]
    if handle.keras_version == 2 and file.layout == "weights" and layer_info.path == layer_info.name:
        model.load_weights(file.path, by_name=True)
        return layer, "loaded by Keras (load_weights by_name)"
    if handle.keras_version == 2:
        hdf5_format = importlib.import_module(f"{handle.package}.src.saving.legacy.hdf5_format")
        converted = hdf5_format.preprocess_weights_for_loading(layer, stored, file.keras_release, file.backend)
        layer.set_weights(converted)
        return layer, "converted by Keras's loading conversion from the stored arrays"
    layer.set_weights(stored)
    return layer, "the stored arrays, which Keras 3 loads unchanged"


def keras_gradients(
    handle: KerasHandle,
    layer: Any,
    inputs: np.ndarray,
    output_grads: Any,
    initial_state: Any = None,
    mask: np.ndarray | None = None,
    watch_states: bool = False,
) -> dict[str, Any]:
    """What ``tf.GradientTape`` gives over the Keras ``layer``: the call
    ``layer(inputs, initial_state=..., mask=...)`` inside a tape, then
    ``tape.gradient(outputs, sources, output_gradients=output_grads)`` for the inputs, the
    initial states and the trainable weights (in ``get_weights()`` order). The same structure
    as :func:`rnnparity.gradients`; an unconnected source gets zeros. ``watch_states``: also
    the gradient w.r.t. a stateful layer's carried states (``"states"``). TensorFlow backends only."""
    import tensorflow as tf

    x = tf.constant(inputs)
    states = None if initial_state is None else tf.nest.map_structure(tf.constant, initial_state)

    def variable(value: Any) -> Any:  # the tf.Variable behind a Keras 3 variable
        return value.value if handle.keras_version == 3 else value

    weights = [variable(w) for w in layer.trainable_weights]
    carried = [variable(s) for s in flatten_nested(layer.states)] if watch_states else []
    kwargs: dict[str, Any] = {}
    if states is not None:
        kwargs["initial_state"] = list(states) if isinstance(states, tuple) else states
    if mask is not None:
        kwargs["mask"] = tf.constant(mask)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        if states is not None:
            tape.watch(tf.nest.flatten(states))
        tape.watch(weights + carried)
        result = layer(x, **kwargs)
    targets = tf.nest.flatten(result)
    given = [tf.constant(g) for g in flatten_nested(output_grads)]
    sources: dict[str, Any] = {"inputs": x, "weights": weights}
    if states is not None:
        sources["initial_state"] = states
    if watch_states:
        sources["states"] = carried
    grads = tape.gradient(targets, sources, output_gradients=given, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    out = {"initial_state": None, **{key: nested_to_numpy(value) for key, value in grads.items()}}
    if isinstance(out["initial_state"], tuple):
        out["initial_state"] = list(out["initial_state"])
    return out


def load_keras2_h5_in_keras3(handle: KerasHandle, path: str, config: dict[str, Any]) -> Any:
    """A Keras 2 (tf_keras) ``.h5`` model loaded by Keras 3 from its stored ``config`` (already
    scanned, with Keras 2's ``time_major=False`` removed: Keras 3 refuses the argument, and
    False is what Keras 3 computes anyway) and the file's weights, through Keras 3's own
    legacy-config deserializer and ``load_weights``."""
    if handle.keras_version != 3:
        raise ImportError("only Keras 3 needs this route; Keras 2 loads its own .h5 files")
    saving_utils = importlib.import_module("keras.src.legacy.saving.saving_utils")
    model = saving_utils.model_from_config(config)
    model.load_weights(path)
    return model
