"""Edge detection: every image under /pfs/images becomes an edge image in /pfs/out.

The user code of Pachyderm's "edges" tutorial, with Pillow instead of OpenCV. With the glob
``/*`` each datum holds one image, so this loop usually sees one file; it works on any number.
``$TUSK_PFS`` is ``/pfs`` in Tusk's bubblewrap sandbox (and in Pachyderm, where it is unset)
and a per-datum folder without a sandbox, so the same code runs everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

PFS = Path(os.environ.get("TUSK_PFS", "/pfs"))
SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def edges(img: Image.Image) -> Image.Image:
    """White edges on black, stretched to the full 0-255 range."""
    found = img.convert("L").filter(ImageFilter.FIND_EDGES)
    pixels = np.asarray(found, dtype=np.float32)
    # FIND_EDGES leaves the one-pixel border at 0 anyway; stretch what is left.
    top = float(pixels.max()) or 1.0
    return Image.fromarray((pixels * (255.0 / top)).clip(0, 255).astype(np.uint8), "L")


def main() -> None:
    src = PFS / "images"
    out = PFS / "out"
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in SUFFIXES:
            continue
        target = (out / path.relative_to(src)).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:
            edges(img).save(target)
        print(f"{path.relative_to(src)} -> {target.relative_to(out)}")


if __name__ == "__main__":
    main()
