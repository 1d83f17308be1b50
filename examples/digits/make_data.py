"""Write scikit-learn's bundled 8x8 handwritten digits as PNG files: ``data/<digit>/NNNN.png``.

    python examples/digits/make_data.py

The 1,797 images ship with scikit-learn (``sklearn.datasets.load_digits``: no download), 17
grey levels (0-16) each. They are scaled to 0-255 (``value * 255 // 16``, so 16 is white) and
saved as 8-bit greyscale PNG, numbered by their index in the dataset: running it again writes
the same bytes. The sub-folder's name is the label ExampleGen reads.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images.astype(np.uint16) * 255 // 16).astype(np.uint8)
    for index, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        target = DATA / str(label) / f"{index:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target, optimize=True)
    print(f"{len(pixels)} images written under {DATA}")


if __name__ == "__main__":
    main()
