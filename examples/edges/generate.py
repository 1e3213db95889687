"""Write small synthetic PNG images (shapes on gradients) for the edges example.

    python3 generate.py OUT_DIR [--count N] [--start I] [--size PX] [--seed S]

Image ``i`` is ``OUT_DIR/shapes-<i>.png``; the same seed and index always give the same
pixels, so ``--start 6 --count 1`` adds one new image to an earlier set of six.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("ellipse", "rectangle", "triangle", "star")


def make_image(index: int, size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng([seed, index])
    # A background gradient in two random colours, at a random angle.
    angle = rng.uniform(0, np.pi)
    ys, xs = np.mgrid[0:size, 0:size] / (size - 1)
    t = (np.cos(angle) * xs + np.sin(angle) * ys + 1) / 2
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    a, b = rng.integers(0, 256, size=(2, 3))
    pixels = (a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]).astype(
        np.uint8
    )
    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        cx, cy = rng.integers(size // 6, size - size // 6, size=2)
        r = int(rng.integers(size // 10, size // 4))
        fill = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = (int(cx - r), int(cy - r), int(cx + r), int(cy + r))
        if kind == "ellipse":
            draw.ellipse(box, fill=fill)
        elif kind == "rectangle":
            draw.rectangle(box, fill=fill)
        else:
            points = 3 if kind == "triangle" else 10
            start = rng.uniform(0, 2 * np.pi)
            poly = []
            for k in range(points):
                radius = r if kind == "triangle" or k % 2 == 0 else r / 2.2
                phi = start + 2 * np.pi * k / points
                poly.append((float(cx + radius * np.cos(phi)), float(cy + radius * np.sin(phi))))
            draw.polygon(poly, fill=fill)
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the PNG files into")
    parser.add_argument("--count", type=int, default=6, help="how many images (default 6)")
    parser.add_argument("--start", type=int, default=0, help="index of the first image")
    parser.add_argument("--size", type=int, default=96, help="width and height in pixels")
    parser.add_argument("--seed", type=int, default=2024, help="random seed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.start, args.start + args.count):
        path = args.out / f"shapes-{i}.png"
        make_image(i, args.size, args.seed).save(path, optimize=True)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
