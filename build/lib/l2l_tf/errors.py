"""The project's own error types: what an entry point reports as one line, without a traceback.

Every error l2l_tf raises on purpose (bad input, missing data, a saved optimizer that does not
load, a meta-training run that cannot go on) derives from `Error`; `cli.run_main` prints those as
`error: <message>` and exits with status 1. Anything else is a bug or an unexpected failure and
keeps its traceback (as does every error with `--debug`). The subclasses also derive from the
builtin type their callers used to catch (`ValueError`, `FileNotFoundError`, ...).
"""


class Error(Exception):
  """Base of the errors l2l_tf raises on purpose."""


class UsageError(Error):
  """Bad input from the command line."""


class ConfigError(Error, ValueError):
  """An argument or configuration the library cannot work with (says which and why)."""
