"""Imported at start-up by each Python process a test starts with this folder on PYTHONPATH.

torchvision md5-checks CIFAR-10's and Flowers-102's files, which fixture files
cannot pass: the training processes the Train page launches accept any file
that exists, as conftest's ``no_md5_check`` makes the test's own process do.
"""

import os

import torchvision.datasets.cifar
import torchvision.datasets.flowers102


def _exists(fpath, md5=None):
    return os.path.isfile(fpath)


torchvision.datasets.cifar.check_integrity = _exists
torchvision.datasets.flowers102.check_integrity = _exists
