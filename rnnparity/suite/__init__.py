"""The Keras side of rnnparity: the adapter that builds Keras layers and twins from one
configuration, the configuration matrix, the case runner, reports and ``diff``, the table of
known differences between Keras versions, the pytest plugin and the benchmark.

Everything here may import Keras (lazily); the core (``rnnparity.*`` at the top) never imports
anything from this package.
"""
