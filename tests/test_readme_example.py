"""The README's library example runs as written, and its learned optimizer beats its untrained self."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
  text = README.read_text()
  block = re.search(r"<!-- example:start -->\s*```python\n(.*?)```\s*<!-- example:end -->", text,
                    re.S)
  assert block, "README lost its example block"
  return block.group(1)


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(readme_example(), "README.md", "exec"), namespace)  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert "mean loss after 40 steps:" in out
  losses = namespace["losses"]
  assert losses.shape == (100, 41) and np.all(np.isfinite(losses))
  assert losses[:, -1].mean() < losses[:, 0].mean()
  assert (tmp_path / "runs" / "rosenbrock" / "optimizer" / "weights.npz").is_file()
