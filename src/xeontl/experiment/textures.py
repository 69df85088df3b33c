"""The demo's synthetic H&E-like textures: one 150x150 tile of a tissue class painted from a random generator (its
stains, nuclei, fibres, glands and vacuoles as the class shows them). experiment/data.py draws the generator from
(seed, index, generator version) and the class from the index."""

from __future__ import annotations

import numpy as np

TILE = 150  # the Kather tiles' side, in pixels

# H&E palette: hematoxylin stains nuclei blue-purple, eosin stains cytoplasm and fibres pink.
_EOSIN = np.array([0.93, 0.62, 0.78])
_HEMA = np.array([0.33, 0.20, 0.52])
_WHITE = np.array([0.97, 0.95, 0.96])
_BLOOD = np.array([0.85, 0.25, 0.30])


def _smooth_noise(rng, cells: int, amp: float) -> np.ndarray:
    """Low-frequency noise (bilinear upsampling of a coarse grid): uneven staining and tissue thickness."""
    grid = rng.normal(0, amp, (cells + 1, cells + 1))
    t = np.linspace(0, cells, TILE)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f) + rows[:, i + 1] * f


_YY, _XX = np.mgrid[0:TILE, 0:TILE].astype(np.float32)


def _blobs(canvas, rng, n, radius, color, aspect=(1.0, 1.0), angle=None, alpha=0.9, centers=None):
    """Stamp n ellipses (nuclei, vacuoles, cells) of the given colour; sizes and shapes vary per blob."""
    if centers is None:
        centers = rng.uniform(0, TILE, (n, 2))
    for cy, cx in centers:
        r = rng.uniform(*radius)
        a = r * rng.uniform(*aspect)
        th = rng.uniform(0, np.pi) if angle is None else angle + rng.normal(0, 0.15)
        ext = int(max(a, r)) + 2
        y0, y1 = max(int(cy) - ext, 0), min(int(cy) + ext + 1, TILE)
        x0, x1 = max(int(cx) - ext, 0), min(int(cx) + ext + 1, TILE)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = _YY[y0:y1, x0:x1] - cy, _XX[y0:y1, x0:x1] - cx
        u = dx * np.cos(th) + dy * np.sin(th)
        v = -dx * np.sin(th) + dy * np.cos(th)
        inside = ((u / a) ** 2 + (v / r) ** 2 <= 1.0)[..., None]
        shade = color * rng.uniform(0.85, 1.1)
        canvas[y0:y1, x0:x1] = np.where(inside, (1 - alpha) * canvas[y0:y1, x0:x1] + alpha * shade,
                                        canvas[y0:y1, x0:x1])


def _fibres(canvas, rng, angle, strength):
    """Wavy eosinophilic fibres along one direction (stroma, complex stroma)."""
    u = _XX * np.cos(angle) + _YY * np.sin(angle)
    v = -_XX * np.sin(angle) + _YY * np.cos(angle)
    freq = rng.uniform(0.25, 0.45)
    wave = np.sin(freq * v + 3 * np.sin(u / rng.uniform(15, 30)) + rng.uniform(0, 6.28))
    mask = np.clip(wave, 0, 1)[..., None] * strength
    canvas[:] = canvas * (1 - mask) + (_EOSIN * 0.8) * mask


def _tissue(rng, base, noise_cells=5, noise_amp=0.05):
    return base + _smooth_noise(rng, noise_cells, noise_amp)[..., None] + np.zeros((TILE, TILE, 3))


def paint(name: str, rng) -> np.ndarray:
    """A uint8 tile of class NAME (TFDS's class names), every value drawn from RNG in one fixed order."""
    mix = rng.uniform(0.0, 0.25)
    pink = _EOSIN * (1 - mix) + _HEMA * mix
    if name == "tumor":  # crowded large irregular pleomorphic nuclei on purple-tinged stroma
        c = _tissue(rng, pink * 0.95)
        _blobs(c, rng, int(rng.integers(70, 130)), (3.5, 7.0), _HEMA, aspect=(1.0, 1.8))
    elif name == "stroma":  # pink fibres, few spindle-shaped nuclei aligned with them
        c = _tissue(rng, _EOSIN)
        ang = rng.uniform(0, np.pi)
        _fibres(c, rng, ang, rng.uniform(0.3, 0.6))
        _blobs(c, rng, int(rng.integers(8, 25)), (1.5, 2.5), _HEMA, aspect=(2.5, 4.0), angle=ang)
    elif name == "complex":  # fibres + mixed nuclei + red blood cells
        c = _tissue(rng, pink)
        _fibres(c, rng, rng.uniform(0, np.pi), rng.uniform(0.15, 0.35))
        _blobs(c, rng, int(rng.integers(25, 60)), (2.0, 5.0), _HEMA, aspect=(1.0, 2.5))
        _blobs(c, rng, int(rng.integers(5, 25)), (2.0, 3.0), _BLOOD, alpha=0.7)
    elif name == "lympho":  # sheets of small round dark nuclei
        c = _tissue(rng, pink * 1.02)
        _blobs(c, rng, int(rng.integers(180, 320)), (2.0, 3.5), _HEMA * 0.9, alpha=0.95)
    elif name == "debris":  # necrosis/mucus: blotchy staining and nuclear dust
        c = _tissue(rng, pink, noise_cells=8, noise_amp=0.15)
        _blobs(c, rng, int(rng.integers(60, 160)), (0.8, 1.8), _HEMA, alpha=0.8)
        _blobs(c, rng, int(rng.integers(3, 8)), (6, 14), _WHITE * 0.95, alpha=0.4)
    elif name == "mucosa":  # glands: rings of nuclei around pale lumens
        c = _tissue(rng, pink * 1.03)
        for _ in range(int(rng.integers(2, 5))):
            cy, cx, rad = rng.uniform(20, 130), rng.uniform(20, 130), rng.uniform(12, 24)
            _blobs(c, rng, 1, (rad * 0.7, rad * 0.7), _WHITE, alpha=0.8, centers=[(cy, cx)])
            t = np.linspace(0, 2 * np.pi, int(rad * 1.2), endpoint=False)
            ring = np.stack([cy + rad * np.sin(t), cx + rad * np.cos(t)], 1)
            _blobs(c, rng, len(ring), (1.8, 2.6), _HEMA, aspect=(1.5, 2.2), centers=ring)
    elif name == "adipose":  # large empty fat vacuoles separated by thin pink membranes
        c = _tissue(rng, _EOSIN * 1.02)
        _blobs(c, rng, int(rng.integers(25, 45)), (10, 22), _WHITE, aspect=(1.0, 1.4), alpha=1.0)
    else:  # empty: background glass with a faint smudge
        c = _tissue(rng, _WHITE, noise_amp=0.02)
        _blobs(c, rng, int(rng.integers(0, 3)), (8, 20), pink, alpha=0.15)
    c *= rng.uniform(0.88, 1.08, 3)  # stain and scanner variation between slides
    c += rng.normal(0, 0.03, c.shape)
    return (np.clip(c, 0, 1) * 255).astype(np.uint8)
