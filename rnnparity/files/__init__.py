"""Model and weight files: Keras HDF5 files read without Keras, twins planned from them, whole
model files loaded and verified layer by layer, and the export of test vectors.

One job per module; the arrows point down the list, never up:

* :mod:`~rnnparity.files.stored`: what a weights file holds (cells, layers) and who wrote it
  (:func:`~rnnparity.files.stored.writer_defaults`);
* :mod:`~rnnparity.files.hdf5`: reading Keras HDF5 weights with h5py alone (the one HDF5
  signature and the one h5py import);
* :mod:`~rnnparity.files.plan`: the twin a stored layer describes, and why;
* :mod:`~rnnparity.files.legacy`: the public face of the three above (``rnnparity.legacy``);
* :mod:`~rnnparity.files.model_file`: a saved model read, scanned for unsafe objects, loaded;
* :mod:`~rnnparity.files.inputs`: the inputs verify feeds a model;
* :mod:`~rnnparity.files.results`: verify's rows, report and captured calls;
* :mod:`~rnnparity.files.weights_check`: stored weights against what Keras loads, and
  weights-only files checked layer by layer;
* :mod:`~rnnparity.files.verify`: ``rnnparity verify``, a whole model run with every recurrent
  layer's calls captured and compared with its twin;
* :mod:`~rnnparity.files.retarget`: a recorded call replayed by a twin set to the other Keras;
* :mod:`~rnnparity.files.drift_target`: the same file loaded and run in the other Keras
  (a subprocess), for the actual change next to the predicted one;
* :mod:`~rnnparity.files.drift`: ``rnnparity drift``, the model's predictions under the other
  Keras, layer by layer and end to end;
* :mod:`~rnnparity.files.export`: captured calls written as test vectors.

Names: ``keras_version`` is Keras's major version, 2 or 3, as on the twins;
``keras_release`` the version string a file records.
"""
