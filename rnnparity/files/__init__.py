"""Model and weight files: Keras HDF5 files read without Keras, twins planned from them, whole
model files loaded and verified layer by layer, and the export of test vectors.
"""
