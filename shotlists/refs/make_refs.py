"""Regenerates the example reference images (solid colours, so they stay a few KB).

Run once by hand with Pillow installed: `python3 make_refs.py`. The images are committed;
tests rely on their exact bytes (cache keys hash them), so only regenerate on purpose.
"""
from PIL import Image

IMAGES = [
    # name, size, colour
    ("harbour.png", (1280, 720), (20, 40, 90)),
    ("alley.jpg", (1280, 720), (60, 30, 30)),
    ("tower.png", (720, 1280), (10, 10, 30)),
    ("skyline.webp", (1920, 1080), (200, 120, 40)),
    # For broken.yaml: right format, wrong size; and a format the API does not take.
    ("thumbnail.png", (640, 360), (0, 128, 0)),
    ("flag.gif", (1280, 720), (255, 0, 0)),
]

for name, size, colour in IMAGES:
    image = Image.new("RGB", size, colour)
    if name.endswith(".jpg"):
        image.save(name, quality=80)
    elif name.endswith(".webp"):
        image.save(name, lossless=True)
    else:
        image.save(name, optimize=True)
