"""A self-contained HTML report: headings, text, tables, images and matplotlib figures.

Everything is inlined (images as ``data:image/png;base64`` URIs, one ``<style>`` block), so the
file can be mailed or archived alone and opens offline.

    >>> r = Report("demo")
    >>> r.heading("Results"); r.table([{"method": "ddrm", "PSNR": 27.1}])
    >>> html = r.html()
"""

from __future__ import annotations

import base64
import html as _html
import io
import math
from pathlib import Path

import numpy as np

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 4px; text-align: center; font-size: 0.8em; }
figure img { image-rendering: pixelated; display: block; }
.muted { color: #666; font-size: 0.9em; } pre { background: #f7f7f7; padding: 0.5em; }
"""


def png_data_uri(image) -> str:
    """A ``(H, W, 3|1)`` uint8 array (or a PIL image) as a ``data:image/png;base64`` URI."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        a = np.asarray(image)
        if a.dtype != np.uint8:
            raise ValueError(f"png_data_uri: expected uint8, got {a.dtype}")
        image = Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure_data_uri(fig) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def fmt(v) -> str:
    """One format for every value in a report: booleans as ``yes`` / ``no``; numbers with 4
    significant digits (scientific below 1e-3 and from 1e5); a missing value (None, NaN) as
    ``–``."""
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


class Report:
    """An HTML document built piece by piece; :meth:`write` saves it."""

    def __init__(self, title: str):
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self._parts.append(f"<h{level}>{_html.escape(text)}</h{level}>")

    def text(self, text: str, muted: bool = False) -> None:
        cls = ' class="muted"' if muted else ""
        self._parts.append(f"<p{cls}>{_html.escape(text)}</p>")

    def pre(self, text: str) -> None:
        self._parts.append(f"<pre>{_html.escape(text)}</pre>")

    def table(self, rows: list[dict], columns: list[str] | None = None) -> None:
        """An HTML table, one row per dict (values through :func:`fmt`)."""
        if not rows:
            return
        cols = columns or list(rows[0])
        head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{_html.escape(fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>"
            for r in rows)
        self._parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def images(self, items, scale: int = 1) -> None:
        """A row of captioned images: ``[(caption, uint8 (H, W, C)), ...]``."""
        figs = []
        for cap, img in items:
            h, w = np.asarray(img).shape[:2]
            figs.append(f'<figure><img src="{png_data_uri(img)}" width="{w * scale}" '
                        f'height="{h * scale}" alt="{_html.escape(cap)}">'
                        f"<figcaption>{_html.escape(cap)}</figcaption></figure>")
        self._parts.append("<div>" + "".join(figs) + "</div>")

    def figure(self, fig, caption: str = "") -> None:
        """A matplotlib figure, inlined as PNG."""
        cap = f"<figcaption>{_html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f'<figure><img src="{figure_data_uri(fig)}" alt="figure">{cap}'
                           f"</figure>")

    def html(self) -> str:
        return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
                f"<title>{_html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
                f"<h1>{_html.escape(self.title)}</h1>" + "\n".join(self._parts) + "</body></html>")

    def write(self, path) -> Path:
        """Write the HTML to ``path`` atomically (a temporary file renamed over it)."""
        import os

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.html(), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path
