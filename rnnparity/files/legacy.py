"""Old Keras files without Keras: the recurrent weights in an HDF5 file, who wrote them,
and the twin they describe.

Three HDF5 layouts hold Keras weights, and :func:`read_weights_file` reads all three with
``h5py`` alone:

* **full model** (``model.save("m.h5")``: Keras 2.0 to 2.15, and Keras 3's legacy format):
  root attributes ``model_config`` (JSON), ``keras_version`` and ``backend``; the weights in
  the ``model_weights`` group;
* **weights only** (``model.save_weights("w.h5")``, Keras 2): the same weights at the root.
  In both, the ``layer_names`` attribute lists the layers in order and each layer's group
  lists its ``weight_names`` in the layer's own weight order (``lstm_1/kernel:0`` in Keras
  2.0-2.2, ``lstm/lstm_cell/kernel:0`` in ``tf.keras``, no ``:0`` in Keras 3). Attributes
  are bytes in old files, and split into ``layer_names0``, ``layer_names1``, ... when long;
* **``*.weights.h5``** (``save_weights`` of ``tf_keras`` and Keras 3): ``layers/<key>/cell/
  vars/0``, ``1``, ``2``, where ``<key>`` is the snake-cased class (``lstm``, ``lstm_1``).
  It records no Keras version and no class; Keras 3 records each layer's name as the
  ``name`` attribute of its ``vars`` group.

A recurrent cell is recognised by its arrays, in Keras's weight order: ``kernel
(input_dim, n * units)``, ``recurrent_kernel (units, n * units)`` and an optional bias, with
``n`` = 4 (LSTM), 3 (GRU) or 1 (SimpleRNN). The bias tells the rest:

======================  ===================================================
bias shape              layer
======================  ===================================================
``(4u,)``               ``LSTM``
``(8u,)``               ``CuDNNLSTM`` (input and recurrent bias per gate)
``(3u,)``               ``GRU(reset_after=False)``
``(2, 3u)``             ``GRU(reset_after=True)``
``(6u,)``               ``CuDNNGRU``
``(u,)``                ``SimpleRNN``
======================  ===================================================

:func:`plan_twin` (:mod:`rnnparity.files.plan`) decides every setting of the twin and says why (:attr:`TwinPlan.
assumptions`): the arguments you give, then the stored config when the file has one, then
the defaults of the Keras version that wrote the file (:func:`writer_defaults`; e.g. Keras
< 2.3 used ``recurrent_activation="hard_sigmoid"``). What the weights fix (units, bias,
GRU ``reset_after``, the cuDNN layers' activations) cannot be overridden. CuDNN weights are
converted with :func:`rnnparity.layout.from_cudnn`, as Keras converts them on loading.

This module is the public face of old-file reading; the work is done in
:mod:`rnnparity.files.hdf5` (reading), :mod:`rnnparity.files.stored` (what was read, and who
wrote it), :mod:`rnnparity.files.plan` (the twin) and :mod:`rnnparity.files.model_file`
(:func:`plain_model_config`, for loading such a model with Keras).
"""

from __future__ import annotations

from rnnparity.files.hdf5 import HDF5_SIGNATURE, attribute_list, attribute_text, is_hdf5, read_weights_file
from rnnparity.files.model_file import plain_model_config
from rnnparity.files.plan import TwinPlan, accepted_keys, plan_twin, twin_from_weights
from rnnparity.files.stored import (
    LAYOUTS,
    MODEL_CLASSES,
    StoredCell,
    StoredLayer,
    WeightsFile,
    WeightsFileError,
    WriterDefaults,
    writer_defaults,
)

__all__ = [
    "HDF5_SIGNATURE",
    "LAYOUTS",
    "MODEL_CLASSES",
    "StoredCell",
    "StoredLayer",
    "TwinPlan",
    "WeightsFile",
    "WeightsFileError",
    "WriterDefaults",
    "accepted_keys",
    "attribute_list",
    "attribute_text",
    "is_hdf5",
    "plain_model_config",
    "plan_twin",
    "read_weights_file",
    "twin_from_weights",
    "writer_defaults",
]
