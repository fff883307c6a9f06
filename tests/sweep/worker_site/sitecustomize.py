"""Run at start-up by the local backend's worker processes during the sweep (``check.py``
puts this folder on their PYTHONPATH): a graph whose code calls torchvision (its stochastic
depth, say) imports torchvision when unpickled, which needs the same tolerance of its
missing compiled ops as the test process (see ``catalogue.py``)."""

from tests.sweep.catalogue import import_tolerantly

import_tolerantly("torchvision")
