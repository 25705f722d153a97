"""Shapes as signed distance functions, and anti-aliased drawing of them onto a uint8 frame.

Everything is in world units (the table is [0, 1]^2, x to the right, y down as in the image), so the
same scene renders consistently at any size. Coverage of a pixel is ``clip(0.5 - sdf * size, 0, 1)``:
the exact area fraction for a straight edge through a pixel, which is all the anti-aliasing we need.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

SHAPES = ("circle", "square", "triangle", "hexagon")

# Each shape's parameter and bounding radius as multiples of the block's nominal size, chosen so the
# shapes look about equally big (areas within ~30 % of each other).
_SQUARE_HALF = 0.85
_TRIANGLE_CIRCUM = 1.25
_HEXAGON_IN = 0.92
BOUND = {"circle": 1.0, "square": _SQUARE_HALF * math.sqrt(2), "triangle": _TRIANGLE_CIRCUM,
         "hexagon": _HEXAGON_IN / math.cos(math.pi / 6)}
_SQ3 = math.sqrt(3.0)


def sdf(kind: str, x, y, s: float):
    """Signed distance (world units, < 0 inside) from points (x, y), relative to the centre, to a shape
    of nominal size ``s``. ``x`` and ``y`` broadcast (arrays or floats)."""
    if kind == "circle":
        return np.sqrt(x * x + y * y) - s
    if kind == "square":
        b = _SQUARE_HALF * s
        qx, qy = np.abs(x) - b, np.abs(y) - b
        outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0.0)
    if kind == "triangle":
        # Inigo Quilez's exact equilateral triangle; -y so that it points up in the image.
        r = _TRIANGLE_CIRCUM * s * _SQ3 / 2  # half the side length
        px = np.abs(x) - r
        py = -y + r / _SQ3
        fold = px + _SQ3 * py > 0.0
        px, py = np.where(fold, (px - _SQ3 * py) / 2, px), np.where(fold, (-_SQ3 * px - py) / 2, py)
        px = px - np.clip(px, -2.0 * r, 0.0)
        return -np.sqrt(px * px + py * py) * np.sign(py)
    if kind == "hexagon":
        # Inigo Quilez's exact hexagon (flat top and bottom), inradius r.
        r = _HEXAGON_IN * s
        kx, ky, kz = -0.866025404, 0.5, 0.577350269
        px, py = np.abs(x), np.abs(y)
        d = 2.0 * np.minimum(kx * px + ky * py, 0.0)
        px, py = px - d * kx, py - d * ky
        px = px - np.clip(px, -kz * r, kz * r)
        py = py - r
        return np.sqrt(px * px + py * py) * np.sign(py)
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")


def outline(kind: str, s: float, n: int = 24) -> np.ndarray:
    """``n`` points on the shape's boundary, relative to its centre: [n, 2] (for block-block contacts)."""
    ang = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang)], 1)
    # March each ray to the boundary: a few Newton-like steps on the SDF along the ray.
    t = np.full(n, s)
    for _ in range(8):
        t = t - sdf(kind, dirs[:, 0] * t, dirs[:, 1] * t, s)
    return dirs * t[:, None]


class Canvas:
    """Pixel-centre coordinates for one image size, and anti-aliased shape drawing onto uint8 frames."""

    def __init__(self, size: int):
        self.size = size
        self.coords = (np.arange(size, dtype=np.float32) + 0.5) / size

    def _box(self, cx: float, cy: float, radius: float):
        n = self.size
        x0 = max(int((cx - radius) * n) - 1, 0)
        x1 = min(int((cx + radius) * n) + 2, n)
        y0 = max(int((cy - radius) * n) - 1, 0)
        y1 = min(int((cy + radius) * n) + 2, n)
        return x0, x1, y0, y1

    def coverage(self, dist) -> np.ndarray:
        # minimum/maximum rather than np.clip: same result, a third of the overhead on small arrays
        return np.minimum(np.maximum(0.5 - dist * self.size, 0.0), 1.0)

    def draw(self, frame: np.ndarray, kind: str, cx: float, cy: float, s: float, colour,
             ring: float = 0.0, rim: float = 0.0, rim_colour=None) -> None:
        """Blend a shape into ``frame`` (uint8 [size, size, 3]) in place, touching only its bounding box.

        ``ring > 0`` draws only an outline of that width; ``rim > 0`` gives a filled shape a border of
        ``rim_colour`` (the effector's dark edge, so its position reads clearly).
        """
        x0, x1, y0, y1 = self._box(cx, cy, BOUND[kind] * s + ring)
        if x0 >= x1 or y0 >= y1:
            return
        d = sdf(kind, self.coords[None, x0:x1] - cx, self.coords[y0:y1, None] - cy, s)
        if ring > 0:
            d = np.abs(d) - ring / 2
        alpha = self.coverage(d)[..., None]
        col = np.asarray(colour, np.float32) * 255.0
        if rim > 0:
            inner = self.coverage(d + rim)[..., None]
            col = np.asarray(rim_colour, np.float32) * 255.0 + inner * (col - np.asarray(rim_colour) * 255.0)
        region = frame[y0:y1, x0:x1]
        region[...] = (region + alpha * (col - region) + 0.5).astype(np.uint8)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def table_background(rng: np.random.Generator, canvas: Canvas) -> np.ndarray:
    """A random table: base colour plus a low-contrast procedural texture (noise, stripes or checker),
    evaluated at pixel centres in world units so it looks the same at every render size. uint8 [H, W, 3]."""
    base = hsv(rng.random(), rng.uniform(0.1, 0.45), rng.uniform(0.35, 0.75))
    x, y = canvas.coords[None, :], canvas.coords[:, None]
    kind = rng.integers(3)
    if kind == 0:  # smooth value noise: bilinear interpolation of a coarse random grid
        g = int(rng.integers(3, 8))
        grid = rng.uniform(-1, 1, (g + 1, g + 1))
        gx, gy = np.broadcast_to(x * g, (canvas.size, canvas.size)), np.broadcast_to(y * g, (canvas.size,) * 2)
        ix, iy = np.minimum(gx.astype(int), g - 1), np.minimum(gy.astype(int), g - 1)
        fx, fy = gx - ix, gy - iy
        fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)  # smoothstep: no visible grid lines
        top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
        bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
        tex = top * (1 - fy) + bottom * fy
    elif kind == 1:  # stripes in a random direction
        a, f = rng.uniform(0, math.pi), rng.uniform(3, 8)
        tex = np.sin(2 * math.pi * f * (x * math.cos(a) + y * math.sin(a)) + rng.uniform(0, 2 * math.pi))
    else:  # soft checkerboard (a clipped product of sines: anti-aliased at every size)
        k = int(rng.integers(3, 8))
        tex = np.clip(4.0 * np.sin(math.pi * k * x) * np.sin(math.pi * k * y), -1.0, 1.0)
    amp = rng.uniform(0.04, 0.1)
    img = base[None, None, :] * (1.0 + amp * tex[..., None] * 2.0)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def distinct_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_dist: float = 0.4) -> np.ndarray:
    """A saturated colour at least ``min_dist`` (RGB in [0, 1], Euclidean) from every colour in ``avoid``."""
    best, best_d = None, -1.0
    for _ in range(50):
        c = hsv(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
        d = min((float(np.linalg.norm(c - a)) for a in avoid), default=1.0)
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best
