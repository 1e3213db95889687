"""Montage: every image next to its edges, one row per image, in /pfs/out/montage.png.

Pachyderm's tutorial runs ImageMagick's ``montage`` here; this does the same with Pillow. The
input is a cross of ``images`` (glob ``/``) and ``edges`` (glob ``/``): one datum that holds
every file of both, so the montage is remade whenever either changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps

PFS = Path(os.environ.get("TUSK_PFS", "/pfs"))
TILE = 96  # each picture is fitted into a TILE x TILE cell
SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def pictures(root: Path) -> dict[str, Path]:
    """Image files below ``root`` by their path without suffix (how edges are named)."""
    return {
        str(p.relative_to(root).with_suffix("")): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in SUFFIXES
    }


def tile(path: Path | None) -> Image.Image:
    if path is None:  # an image whose edges are not there: a grey cell
        return Image.new("RGB", (TILE, TILE), (128, 128, 128))
    with Image.open(path) as img:
        return ImageOps.pad(img.convert("RGB"), (TILE, TILE), color=(0, 0, 0))


def main() -> None:
    images = pictures(PFS / "images")
    edges = pictures(PFS / "edges")
    names = sorted(images)
    sheet = Image.new("RGB", (2 * TILE, max(1, len(names)) * TILE), (255, 255, 255))
    for row, name in enumerate(names):
        sheet.paste(tile(images[name]), (0, row * TILE))
        sheet.paste(tile(edges.get(name)), (TILE, row * TILE))
    out = PFS / "out" / "montage.png"
    sheet.save(out)
    print(f"montage of {len(names)} images ({len(edges)} edge images): {sheet.size}")


if __name__ == "__main__":
    main()
