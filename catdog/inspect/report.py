"""The self-contained HTML page of `catdog inspect`: thumbnails and plots embedded as data URIs."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from catdog.atomic import write_text
from catdog.data import LABELS, shown

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-bottom:4px} h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:14px} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px} .card{width:180px;font-size:12px;word-wrap:break-word}
.card img{max-width:180px;max-height:180px;display:block;border:1px solid #ccc}
.pair{display:flex;gap:8px;margin:8px 0;align-items:flex-start;font-size:12px}
.muted{color:#666;font-size:13px}
"""


def _data_uri(image: Image.Image | np.ndarray, size: int = 180) -> str:
    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image.copy()
    im = im.convert("RGB")
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumb(path: Path) -> str:
    try:
        with Image.open(path) as im:
            return _data_uri(ImageOps.exif_transpose(im))  # upright, as the model saw it and the card's size says
    except Exception:
        return ""


def _card(photo, text: str, image_uri: str | None = None) -> str:
    uri = image_uri or _thumb(photo.path)
    label = LABELS[photo.label] if photo.label >= 0 else "unlabelled"
    return (
        f'<div class="card"><img src="{uri}" alt="{html.escape(photo.name)}">'
        f"<b>{html.escape(photo.name)}</b> ({label}, {photo.width}x{photo.height})<br>{html.escape(text)}</div>"
    )


def _plots(sizes: np.ndarray, labels: np.ndarray, ratios: np.ndarray, fences) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for label, colour in ((0, "tab:orange"), (1, "tab:blue"), (-1, "tab:grey")):
        rows = labels == label
        if rows.any():
            name = LABELS[label] if label >= 0 else "unlabelled"
            ax.scatter(sizes[rows, 0], sizes[rows, 1], s=8, alpha=0.5, c=colour, label=f"{name} ({rows.sum()})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title("photo sizes")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    scatter = _figure_uri(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(ratios, bins=60, color="tab:purple", alpha=0.8)
    for fence in fences:
        ax.axvline(fence, color="red", linestyle="--")
    ax.set_xlabel("distinct colours / pixels (at 224x224)")
    ax.set_ylabel("photos")
    ax.set_title("colour ratio, with the IQR fences")
    histogram = _figure_uri(fig)
    return scatter, histogram


def write_report(path: Path, summary: dict, photos, sizes, ratios, fences, worst_rows, rejections) -> None:
    labels = np.array([p.label for p in photos])
    scatter, histogram = _plots(sizes, labels, ratios, fences)

    def section(title: str, cards: list[str], empty: str) -> str:
        body = f'<div class="grid">{"".join(cards)}</div>' if cards else f'<p class="muted">{empty}</p>'
        return f"<h2>{title} ({len(cards)})</h2>{body}"

    tiny = [_card(p, r) for p in photos for r in p.reasons if r.startswith("tiny")]
    colour = [_card(p, r) for p in photos for r in p.reasons if r.startswith("colour ratio")]
    imagenet = [_card(p, r) for p in photos for r in p.reasons if r.startswith("ImageNet")]
    by_name = {p.name: p for p in photos}
    dup_html = [
        f'<div class="pair"><img src="{_thumb(by_name[p.scores["duplicate_of"]].path)}" width="140">'
        f'<img src="{_thumb(p.path)}" width="140"><div>{html.escape(p.name)} ≈ {html.escape(p.scores["duplicate_of"])}<br>'
        f'{html.escape(next(r for r in p.reasons if "duplicate" in r))}</div></div>'
        for p in photos
        if "duplicate_of" in p.scores
    ]
    # ranked by log loss: with few mistakes the list goes on into right answers the model was least sure of
    worst_html = [
        _card(r["photo"], f"{'WRONG' if r['predicted'] != LABELS[r['photo'].label] else 'right, unsure'}: log loss {r['loss']:.2f},"
              f" model says {r['predicted']} (P={r['p']:.3f})", _data_uri(r["overlay"]))
        for r in worst_rows
    ]
    model_title = "Photos the model gets most wrong (CAM of the predicted class)"
    if summary.get("model_wrong") is not None:
        model_title = (f"Photos the model gets most wrong: the highest log loss first; {summary['model_wrong']} of the labelled "
                       "photos wrong (CAM of the predicted class)")
    suspects = [p for p in photos if p.reasons]
    rows = "".join(
        f"<tr><td>{html.escape(p.name)}</td><td>{LABELS[p.label] if p.label >= 0 else ''}</td>"
        f"<td>{'<br>'.join(html.escape(r) for r in p.reasons)}</td></tr>"
        for p in suspects
    )
    rejected = "".join(f"<tr><td>{html.escape(shown(r.path))}</td><td>{html.escape(r.reason)}</td></tr>" for r in rejections)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>catdog inspect: {html.escape(summary['data'])}</title>
<style>{CSS}</style></head><body>
<h1>catdog inspect</h1><p class="muted">{html.escape(summary['data'])}</p>
<table><tr><th>photos</th><th>rejected files</th><th>suspects</th><th>tiny</th><th>colour outliers</th>
<th>ImageNet top-{summary['top_k']} misses</th><th>duplicates</th></tr>
<tr><td>{summary['photos']}</td><td>{summary['rejected']}</td><td>{summary['suspects']}</td><td>{summary['tiny']}</td>
<td>{summary['colour_outliers']}</td><td>{summary['imagenet_misses']}</td><td>{summary['duplicates']}</td></tr></table>
<h2>How each check works</h2><ul class="muted">
<li><b>tiny</b>: the shorter side is under {summary.get('min_side', 50)} px (see the scatter plot).</li>
<li><b>colour ratio</b>: distinct RGB colours of the photo decoded at 224x224, divided by its 50,176 pixels. Outliers lie
outside [Q1 − 1.5·IQR, Q3 + 1.5·IQR] = [{fences[0]:.3f}, {fences[1]:.3f}]: few colours means drawings, cartoons, text or
flat graphics; very many means noise-like images.</li>
<li><b>ImageNet</b>: {html.escape(summary['backbone'])} with its ImageNet top; a cat photo whose top-{summary['top_k']} holds
none of classes 281–285, 287 (tabby, tiger cat, Persian, Siamese, Egyptian cat, lynx), or a dog photo whose top-{summary['top_k']}
holds none of classes 151–268 (the dog breeds): likely mislabelled, non-pet, cartoon, or two animals.</li>
<li><b>model</b>: with a RUN_DIR, the labelled photos with the highest log loss under the trained model, with the CAM of
the class it predicts; where it gets fewer wrong than are shown, the rest are right answers it was least sure of. Photos
the model was trained on score better than new ones would (its out-of-fold mistakes are in the run's report.html).</li>
<li><b>duplicates</b>: 256-bit difference hash (dHash) of the grayscale photo at 17x16; pairs within 10 bits.</li></ul>
<h2>Photo sizes</h2><img src="{scatter}" alt="size scatter plot">
{section("Tiny images", tiny, "none")}
<h2>Colour ratio</h2><img src="{histogram}" alt="colour ratio histogram">
{section("Colour-ratio outliers", colour, "none")}
{section(f"No class of the photo's label in the ImageNet top-{summary['top_k']}", imagenet, "none")}
{section(model_title, worst_html, summary.get("model_check") or "no RUN_DIR given (pass --run RUN_DIR)")}
<h2>Duplicates and near-duplicates ({len(dup_html)})</h2>{''.join(dup_html) or '<p class="muted">none</p>'}
<h2>All suspects ({len(suspects)})</h2><table><tr><th>file</th><th>label</th><th>reasons</th></tr>{rows}</table>
<h2>Rejected files ({len(rejections)})</h2><table><tr><th>file</th><th>reason</th></tr>{rejected}</table>
</body></html>"""
    write_text(path, page)
