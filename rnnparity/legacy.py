"""``rnnparity.legacy`` is :mod:`rnnparity.files.legacy` (old Keras HDF5 weight files).

Kept so that ``import rnnparity.legacy`` and ``rnnparity.legacy.twin_from_weights`` go on working.
"""

import sys

from rnnparity.files import legacy as _legacy

sys.modules[__name__] = _legacy
