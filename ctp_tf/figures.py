"""matplotlib, set up once: the headless backend and atomic figure files.

Every module that draws (`plots.py`, `curves.py`, `downstream/evaluate.py`,
`downstream/gradcam.py`) gets pyplot from `pyplot()` (matplotlib is imported only when a
figure is made) and writes with `save_figure` (a reader never sees half a PNG).

Example:
```python
from ctp_tf import figures
plt = figures.pyplot()
fig, ax = plt.subplots()
figures.save_figure(fig, "out/curve.png", dpi=100)
```
"""

from ctp_tf import fileio


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display needed)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save_figure(fig, path, *, dpi=100, close=True):
  """`fig.savefig` to a temporary name, then rename; closes the figure. Returns `path`."""
  fileio.save_atomic(lambda tmp: fig.savefig(tmp, dpi=dpi), path)
  if close:
    pyplot().close(fig)
  return path
