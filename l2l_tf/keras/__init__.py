"""Trained optimizers in Keras 3: `LearnedOptimizer` for `model.compile(optimizer=...)`."""

if __name__ == "keras":
  # This package was found as Keras itself: l2l_tf/ is on sys.path, as when an l2l_tf/*.py file
  # runs as a script (Bazel's py_binary does that). Drop that entry and hand the importer the real
  # Keras (importlib returns whatever sys.modules holds after this runs).
  import importlib as _importlib
  import os as _os
  import sys as _sys

  _PARENT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
  _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or _os.curdir) != _PARENT]
  del _sys.modules[__name__]
  _sys.modules[__name__] = _importlib.import_module(__name__)
else:
  from l2l_tf.keras.optimizer import (LearnedOptimizer, MetaParameterMismatchError,
                                      check_supported, compute_checksum)
