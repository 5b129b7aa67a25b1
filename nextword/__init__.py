"""nextword: streaming data and training toolkit for next-word text generation.

Installed, the stages are subpackages: nextword.ingest, nextword.tfrecords, nextword.model and
nextword.generate (pyproject.toml maps them from the repository's top-level folders). Run from a
source tree (PYTHONPATH=the repository, as bench/ and the tests' subprocesses do), the same names
resolve to those folders through this package's search path.
"""

import os as _os

# 0.1.0: format-1 datasets (one Example per window); 0.2: span records; 0.3: best-checkpoint runs.
__version__ = "0.3.0"

_STAGES = ("ingest", "tfrecords", "model", "generate")
_SOURCE_TREE = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if all(_os.path.isfile(_os.path.join(_SOURCE_TREE, stage, "__init__.py")) for stage in _STAGES) and \
        _os.path.isfile(_os.path.join(_SOURCE_TREE, "pyproject.toml")):
    __path__.append(_SOURCE_TREE)  # noqa: F821  (a package's __path__): nextword.ingest -> ingest/
