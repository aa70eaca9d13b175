"""Show a matplotlib figure as an embedded PNG under any backend.

Batch kernels run with ``MPLBACKEND=agg`` (no inline backend, so ``plt.show()`` displays
nothing); :func:`show` renders the figure to PNG and displays it, so the image lands in
the executed notebook and, as a data URI, in ``report.html``. In JupyterLab it looks the
same as the inline backend.
"""

from __future__ import annotations

import io

__all__ = ["show"]


def show(fig=None, dpi: int = 100) -> None:
    """Display ``fig`` (default: the current figure) as PNG and close it."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    fig = fig if fig is not None else plt.gcf()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue(), format="png"))
