"""Model and weight files: Keras HDF5 files read without Keras, twins planned from them, whole
model files loaded and verified layer by layer, their drift under the other Keras (``drift``,
``retarget``, ``drift_target``), and the export of test vectors.
"""
