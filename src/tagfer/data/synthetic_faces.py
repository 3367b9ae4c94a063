"""Procedural faces whose expression is produced by Action Units (PIL + numpy, deterministic).

One face is made in two steps:

1. :func:`sample_face` draws a :class:`FaceSpec` from a ``numpy.random.Generator``: the AU intensities
   of the class (:func:`sample_aus`: the EMFACS prototype of :data:`tagfer.core.vocabulary.EXPRESSION_PRIORS`
   with random intensities, a prototype AU sometimes missing and a co-occurring AU sometimes added), the
   identity (skin tone, face proportions, hair, eye colour, clothes), the background, the illumination,
   and the pose (scale, position, in-plane rotation) chosen so that all 68 landmarks lie in the image.
2. :func:`render_face` draws the spec. Every shape is placed relative to the AU-deformed 68 landmarks of
   :mod:`tagfer.data.face_geometry`, so the returned landmarks are exactly where the drawn features are.
   Besides moving landmarks, AUs leave the texture cues a coder looks for: forehead lines (AU1/AU2),
   vertical lines between knitted brows (AU4), visible sclera above the iris (AU5), crow's feet, lower-lid
   bulge and raised cheeks (AU6), nose-bridge wrinkles (AU9), nasolabial folds (AU9/AU10/AU12), dimples
   (AU14), marionette lines (AU15), lower teeth (AU16), chin bumps (AU17), stretch lines (AU20), a pressed
   lip line (AU23/AU24), and a dark open mouth with teeth (AU25/AU26).

The image is drawn at 2–4× the output size and downsampled (anti-aliasing), then lit by a directional
gradient and given sensor noise. Cues are exaggerated so an expression can be read by eye at 112×112.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.vocabulary import AU_LIST, EXPRESSION_PRIORS, WIDE_CODEBOOK
from tagfer.data.face_geometry import NEUTRAL_LANDMARKS, deform, to_image

#: Bumped whenever the same seed would give different images or annotations.
GENERATOR_VERSION = 2

#: Prototype AUs a face of the class always shows (the others of its prototype may be missing).
KEY_AUS: dict[str, tuple[str, ...]] = {
    "neutral": (),
    "happiness": ("AU12",),
    "sadness": ("AU1", "AU15"),
    "surprise": ("AU2", "AU26"),
    "fear": ("AU1", "AU4", "AU20"),
    "anger": ("AU4", "AU23"),
    "disgust": ("AU9",),
    "contempt": ("AU12", "AU14"),
}
#: AUs that co-occur with the class (the wider codebook of Belharbi et al. minus the EMFACS prototype).
EXTRA_AUS: dict[str, tuple[str, ...]] = {
    label: tuple(au for au in WIDE_CODEBOOK[label] if au not in EXPRESSION_PRIORS[label]) for label in CLASS_NAMES
}
#: Classes whose prototype AUs act on one side of the face only (EMFACS contempt: R12A + R14A).
UNILATERAL: dict[str, tuple[str, ...]] = {"contempt": ("AU12", "AU14")}

P_DROP_PROTOTYPE_AU = 0.15  # a non-key prototype AU is missing
P_EXTRA_AU = 0.2  # each co-occurring AU is added
P_FAINT_AU = 0.25  # one faint unrelated AU (intensity ≤ 0.2) is added

SKIN_TONES = (
    (244, 212, 188),
    (232, 190, 160),
    (214, 168, 130),
    (190, 140, 104),
    (160, 112, 80),
    (122, 82, 58),
    (92, 62, 46),
)
HAIR_COLOURS = ((25, 20, 18), (60, 40, 28), (105, 72, 45), (170, 130, 80), (140, 60, 30), (150, 150, 150), (45, 35, 30))
IRIS_COLOURS = ((70, 45, 25), (40, 30, 25), (70, 110, 160), (75, 115, 80), (110, 85, 50))
HAIR_STYLES = ("short", "long", "fringe", "bald")
BACKGROUNDS = ("flat", "gradient", "texture")

SCLERA = (236, 233, 228)
TEETH = (242, 238, 225)
MOUTH_INSIDE = (62, 18, 24)


@dataclass
class Appearance:
    """Everything about a face that is not expression or pose."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str  # one of HAIR_STYLES
    hairline: float  # canonical y of the hairline (above the highest brow position)
    iris: tuple[int, int, int]
    gaze: tuple[float, float]  # iris offset in canonical units
    clothes: tuple[int, int, int]
    stretch: tuple[float, float]  # face proportions: canonical (x, y) scale factors
    brow_thickness: float
    background: str  # one of BACKGROUNDS
    background_grid: np.ndarray  # [k, k, 3] uint8 colours, upsampled to the background
    light_angle: float  # radians, direction the light comes from
    light_strength: float  # brightness change across the image
    brightness: float
    noise: float  # sensor-noise standard deviation (grey levels)
    noise_seed: int
    blur: float  # final Gaussian blur radius (output pixels)


@dataclass
class FaceSpec:
    """A face to draw: class, AUs, identity and pose (see :func:`sample_face`)."""

    label: str
    au_intensity: dict[str, float]
    au_side: dict[str, str]  # unilateral AUs → "right" | "left" (the subject's side; right = image left)
    appearance: Appearance
    image_size: int
    scale: float  # pixels per canonical unit (half the face width)
    angle: float  # in-plane rotation, degrees
    centre: tuple[float, float]  # image position of the canonical origin


@dataclass
class SyntheticFace:
    """A rendered face and its ground truth."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    landmarks: np.ndarray  # [68, 2] float32 image pixels, iBUG-68 order
    face_box: tuple[float, float, float, float]  # the skin oval (forehead to chin), clipped to the image
    au_intensity: dict[str, float]  # every AU of AU_LIST → [0, 1]
    au_side: dict[str, str] = field(default_factory=dict)
    pose: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ sampling
def sample_aus(rng: np.random.Generator, label: str) -> tuple[dict[str, float], dict[str, str]]:
    """AU intensities (every AU of ``AU_LIST``, in [0, 1]) and unilateral sides for one face of ``label``.

    Key AUs (:data:`KEY_AUS`) get U(0.5, 1); other prototype AUs are missing with probability
    ``P_DROP_PROTOTYPE_AU`` and otherwise get U(0.35, 1); each co-occurring AU (:data:`EXTRA_AUS`) is
    added with probability ``P_EXTRA_AU`` at U(0.2, 0.6); with probability ``P_FAINT_AU`` one random
    absent AU is added at U(0.05, 0.2).
    """
    if label not in EXPRESSION_PRIORS:
        raise ValueError(f"unknown class {label!r}; expected one of {list(CLASS_NAMES)}")
    intensity = {au: 0.0 for au in AU_LIST}
    for au in EXPRESSION_PRIORS[label]:
        if au in KEY_AUS[label]:
            intensity[au] = float(rng.uniform(0.5, 1.0))
        elif rng.random() >= P_DROP_PROTOTYPE_AU:
            intensity[au] = float(rng.uniform(0.35, 1.0))
    for au in EXTRA_AUS[label]:
        if rng.random() < P_EXTRA_AU:
            intensity[au] = max(intensity[au], float(rng.uniform(0.2, 0.6)))
    if rng.random() < P_FAINT_AU:
        absent = [au for au in AU_LIST if intensity[au] == 0.0]
        intensity[absent[int(rng.integers(len(absent)))]] = float(rng.uniform(0.05, 0.2))
    side = str(rng.choice(("right", "left")))
    sides = {au: side for au in UNILATERAL.get(label, ()) if intensity[au] > 0}
    return intensity, sides


def _jitter(rng: np.random.Generator, colour, amount: float) -> tuple[int, int, int]:
    values = np.asarray(colour, dtype=float) + rng.normal(0.0, amount, 3)
    return tuple(int(v) for v in np.clip(values, 0, 255))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random identity, background and illumination."""
    grid_size = int(rng.choice((2, 3, 5)))
    return Appearance(
        skin=_jitter(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 6),
        hair=_jitter(rng, HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))], 8),
        hair_style=str(rng.choice(HAIR_STYLES, p=(0.35, 0.3, 0.25, 0.1))),
        hairline=float(rng.uniform(-1.08, -0.9)),
        iris=_jitter(rng, IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))], 8),
        gaze=(float(rng.uniform(-0.025, 0.025)), float(rng.uniform(-0.01, 0.01))),
        clothes=tuple(int(v) for v in rng.integers(20, 235, 3)),
        stretch=(float(rng.uniform(0.9, 1.04)), float(rng.uniform(0.95, 1.07))),
        brow_thickness=float(rng.uniform(0.055, 0.085)),
        background=str(rng.choice(BACKGROUNDS)),
        background_grid=rng.integers(0, 256, (grid_size, grid_size, 3)).astype(np.uint8),
        light_angle=float(rng.uniform(0, 2 * np.pi)),
        light_strength=float(rng.uniform(0.0, 0.35)),
        brightness=float(rng.uniform(0.85, 1.1)),
        noise=float(rng.uniform(0.0, 4.0)),
        noise_seed=int(rng.integers(2**31)),
        blur=float(rng.choice((0.0, 0.0, 0.3, 0.5))),
    )


def face_landmarks(spec: FaceSpec) -> np.ndarray:
    """``[68, 2]`` image landmarks of the spec (AU deformation, face proportions, then pose)."""
    canonical = deform(spec.au_intensity, spec.au_side) * np.asarray(spec.appearance.stretch)
    return to_image(canonical, spec.scale, spec.angle, spec.centre)


POSES = ("random", "aligned")


def sample_face(rng: np.random.Generator, label: str, image_size: int = 112, pose: str = "random", canvas: float = 1.0) -> FaceSpec:
    """A random face of class ``label`` whose 68 landmarks all lie at least 4 % inside the image.

    ``pose="random"``: half the face width is U(0.30, 0.40) of the image side divided by ``canvas``
    (shrunk until the face fits), the rotation U(−12°, 12°), and the position uniform over the places
    where the landmarks fit. ``canvas`` > 1 makes a whole photo with a small face: the face of an
    ``image_size / canvas`` picture placed anywhere in a larger scene (1: the face fills the frame;
    the same seed then draws the same face as before the option existed).
    ``pose="aligned"``: like the aligned crops of real datasets (RAF-DB ``aligned``): half-width
    U(0.34, 0.40), rotation U(−4°, 4°), centre within ±4 % of the image side around (0.5, 0.47) —
    a small residual misalignment, so boxes still differ from face to face (``canvas`` must be 1).
    """
    if image_size < 32:
        raise ValueError(f"image_size={image_size}: synthetic faces need at least 32 pixels")
    if pose not in POSES:
        raise ValueError(f"pose={pose!r}; expected one of {list(POSES)}")
    if canvas < 1.0 or (pose == "aligned" and canvas != 1.0):
        raise ValueError(f"canvas={canvas}: expected ≥ 1, and exactly 1 with pose='aligned'")
    au_intensity, au_side = sample_aus(rng, label)
    appearance = sample_appearance(rng)
    aligned = pose == "aligned"
    scale = float(rng.uniform(0.34, 0.40) if aligned else rng.uniform(0.30, 0.40)) * image_size / canvas
    angle = float(rng.uniform(-4.0, 4.0) if aligned else rng.uniform(-12.0, 12.0))
    margin = 0.04 * image_size
    spec = FaceSpec(label, au_intensity, au_side, appearance, image_size, scale, angle, (0.0, 0.0))
    while True:
        points = face_landmarks(spec)
        low = margin - points.min(axis=0)
        high = image_size - margin - points.max(axis=0)
        if np.all(low <= high):
            break
        spec.scale *= 0.92
    if aligned:
        jitter = rng.uniform(-0.04, 0.04, size=2) * image_size
        target = np.array([0.5, 0.47]) * image_size + jitter
        spec.centre = tuple(float(v) for v in np.clip(target, low, high))
    else:
        spec.centre = (float(rng.uniform(low[0], high[0])), float(rng.uniform(low[1], high[1])))
    return spec


def make_face(rng: np.random.Generator, label: str, image_size: int = 112, pose: str = "random", canvas: float = 1.0) -> SyntheticFace:
    """:func:`sample_face` then :func:`render_face`."""
    return render_face(sample_face(rng, label, image_size, pose, canvas))


# ----------------------------------------------------------------------------------------- rendering
def _catmull_rom(points: np.ndarray, closed: bool, samples: int = 6) -> np.ndarray:
    """Smooth curve through ``points`` ``[N, 2]`` (uniform Catmull–Rom, ``samples`` per segment)."""
    p = np.asarray(points, dtype=float)
    ext = np.vstack([p[-1], p, p[0], p[1]]) if closed else np.vstack([p[0], p, p[-1]])
    p0, p1, p2, p3 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[None, :, None]
    curve = 0.5 * (
        2 * p1[:, None]
        + (p2 - p0)[:, None] * t
        + (2 * p0 - 5 * p1 + 4 * p2 - p3)[:, None] * t**2
        + (3 * p1 - p0 - 3 * p2 + p3)[:, None] * t**3
    ).reshape(-1, 2)
    return curve if closed else np.vstack([curve, p[-1:]])


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _shade(colour, factor: float, alpha: int | None = None) -> tuple[int, ...]:
    rgb = tuple(int(np.clip(c * factor, 0, 255)) for c in colour)
    return rgb if alpha is None else (*rgb, int(np.clip(alpha, 0, 255)))


class _Painter:
    """Draws canonical-coordinate shapes on a supersampled canvas through the face's pose."""

    def __init__(self, spec: FaceSpec, supersample: int):
        self.spec = spec
        self.ss = supersample
        self.size = spec.image_size * supersample
        self.stretch = np.asarray(spec.appearance.stretch)

    def px(self, points) -> list[float]:
        """Flat ``[x0, y0, x1, y1, ...]`` canvas pixels of canonical ``points``."""
        pts = np.asarray(points, dtype=float).reshape(-1, 2) * self.stretch
        return (to_image(pts, self.spec.scale, self.spec.angle, self.spec.centre) * self.ss).ravel().tolist()

    def width(self, canonical_width: float) -> int:
        return max(1, int(round(canonical_width * self.spec.scale * self.ss)))

    def polygon(self, draw: ImageDraw.ImageDraw, points, fill) -> None:
        draw.polygon(self.px(points), fill=fill)

    def line(self, draw: ImageDraw.ImageDraw, points, fill, width: float) -> None:
        draw.line(self.px(points), fill=fill, width=self.width(width), joint="curve")

    def layer(self) -> Image.Image:
        return Image.new("RGBA", (self.size, self.size), (0, 0, 0, 0))

    def mask(self, points) -> Image.Image:
        mask = Image.new("L", (self.size, self.size), 0)
        ImageDraw.Draw(mask).polygon(self.px(points), fill=255)
        return mask


def _supersample(image_size: int) -> int:
    return int(min(4, max(1, math.ceil(448 / image_size))))


def _background(spec: FaceSpec) -> Image.Image:
    """The output-size RGB background: one colour, a smooth gradient or a blurry colour texture."""
    app = spec.appearance
    size = spec.image_size
    grid = Image.fromarray(app.background_grid)
    if app.background == "flat":
        grid = Image.fromarray(np.broadcast_to(app.background_grid[:1, :1], (2, 2, 3)).copy())
    resample = Image.Resampling.BILINEAR if app.background == "gradient" else Image.Resampling.BICUBIC
    return grid.resize((size, size), resample)


def _forehead(lm: np.ndarray, radius: float = 1.0) -> np.ndarray:
    """Arc over the head from the image-right temple (point 16) to the image-left temple (point 0).

    ``radius`` > 1 gives the outline of hair lying on the head.
    """
    phi = np.linspace(0, np.pi, 24)[1:-1]
    return np.stack([0.98 * radius * np.cos(phi), lm[0, 1] - 1.08 * radius * np.sin(phi)], axis=1)


def _hairline(app: Appearance) -> np.ndarray:
    t = np.linspace(1, -1, 25)
    y = app.hairline + (-0.2 - app.hairline) * np.abs(t) ** 3
    if app.hair_style == "fringe":
        y = y + 0.06 * (1 - np.abs(t)) * (1 + np.cos(9 * np.pi * t)) / 2
    return np.stack([0.99 * t, y], axis=1)


def _draw_head(canvas: Image.Image, p: _Painter, lm: np.ndarray) -> None:
    app = p.spec.appearance
    draw = ImageDraw.Draw(canvas)
    if app.hair_style == "long":
        back = np.vstack([[[1.22, 1.9]], _forehead(lm, 1.16) * [1.2, 1.0], [[-1.22, 1.9]]])
        p.polygon(draw, _catmull_rom(back, closed=True, samples=3), app.hair)
    p.polygon(draw, [(-0.42, 0.6), (0.42, 0.6), (0.55, 3.0), (-0.55, 3.0)], _shade(app.skin, 0.82))
    p.polygon(draw, _ellipse(0.0, 2.55, 2.0, 0.95, 40), app.clothes)
    for sign in (-1, 1):
        p.polygon(draw, _ellipse(sign * 0.99, 0.05, 0.11, 0.2), _shade(app.skin, 0.9))
    p.polygon(draw, _face_oval(lm), app.skin)


def _face_oval(lm: np.ndarray) -> np.ndarray:
    """Closed canonical outline of the skin: the jaw (points 0..16) and the forehead arc."""
    return _catmull_rom(np.vstack([lm[0:17], _forehead(lm)]), closed=True, samples=3)


def _edge_shading(spec: FaceSpec, lm: np.ndarray) -> Image.Image:
    """Output-size RGBA shadow along the inside of the face outline (the face is rounder than a disc)."""
    p = _Painter(spec, 1)
    ring = p.layer()
    p.line(ImageDraw.Draw(ring), _face_oval(lm), _shade(spec.appearance.skin, 0.6, 150), 0.16)
    ring = ring.filter(ImageFilter.GaussianBlur(max(1.0, spec.image_size / 45)))
    shadow = p.layer()
    shadow.paste(ring, mask=p.mask(_face_oval(lm)))
    return shadow


def _draw_hair_front(canvas: Image.Image, p: _Painter, lm: np.ndarray) -> None:
    app = p.spec.appearance
    if app.hair_style == "bald":
        return
    outer = _forehead(lm, 1.06)[::-1]  # image-left to image-right
    cap = np.vstack([[(-1.03, -0.15)], outer, [(1.03, -0.15)], _hairline(app)])
    p.polygon(ImageDraw.Draw(canvas), cap, app.hair)


def _wrinkles(p: _Painter, lm: np.ndarray, au: dict[str, float], side_weight: dict[str, tuple[float, float]]) -> Image.Image:
    """RGBA layer of the AU texture cues (creases are drawn dark, opacity ∝ intensity)."""
    app = p.spec.appearance
    layer = p.layer()
    draw = ImageDraw.Draw(layer)

    def crease(points, strength: float, width: float = 0.022, factor: float = 0.55) -> None:
        if strength > 0.02:
            p.line(draw, points, _shade(app.skin, factor, 255 * min(1.0, strength)), width)

    # forehead lines: AU1 (centre) and AU2 (sides)
    a1, a2 = au["AU1"], au["AU2"]
    brow_top = min(lm[17:27, 1])
    half = 0.18 + 0.25 * a1 + 0.4 * a2
    for k in range(3):
        y = brow_top - 0.085 * (k + 1)
        if y > app.hairline + 0.03:
            xs = np.linspace(-half, half, 9)
            crease(np.stack([xs, y + 0.035 * (xs / half) ** 2 - 0.01 * a1], axis=1), 1.1 * max(a1, a2) - 0.1 * k)
    # glabella: AU4 vertical lines between the brows; AU9 horizontal lines on the nose bridge
    for sign in (-1, 1):
        x = sign * 0.06
        crease([(x, lm[21, 1] - 0.02), (x * 0.8, lm[21, 1] + 0.12)], 1.2 * au["AU4"], 0.026)
    for k in range(3):
        y = lm[27, 1] + 0.05 + 0.045 * k
        crease([(-0.1, y), (0.0, y - 0.015), (0.1, y)], 1.2 * au["AU9"], 0.02)
    for sign, eye_outer, lid_points in ((-1, 36, (41, 40)), (1, 45, (46, 47))):
        s = 0 if sign < 0 else 1
        corner = lm[eye_outer]
        # crow's feet (AU6)
        for dy in (-0.05, 0.0, 0.06):
            crease([corner + (sign * 0.05, dy * 0.3), corner + (sign * 0.14, dy)], 1.1 * au["AU6"], 0.018)
        # lower-lid bulge (AU6, AU7)
        lid = np.array([lm[36 if sign < 0 else 45], lm[lid_points[0]], lm[lid_points[1]], lm[39 if sign < 0 else 42]])
        crease(_catmull_rom(lid + (0, 0.055), closed=False), max(au["AU6"], 0.7 * au["AU7"]), 0.02, 0.65)
        # nasolabial fold (AU12, AU10, AU9, AU6; faint in every face)
        wing = lm[31 if sign < 0 else 35]
        mouth_corner = lm[48 if sign < 0 else 54]
        fold = np.array([wing + (sign * 0.04, -0.03), mouth_corner + (sign * 0.07, -0.08), mouth_corner + (sign * 0.06, 0.06)])
        strength = max(au["AU12"] * side_weight["AU12"][s], 0.9 * au["AU10"], 0.7 * au["AU9"], 0.6 * au["AU6"], 0.1)
        crease(_catmull_rom(fold, closed=False), strength, 0.026)
        # dimple (AU14), marionette line (AU15), stretch line (AU20)
        dimple = 1.3 * au["AU14"] * side_weight["AU14"][s]
        crease([mouth_corner + (sign * 0.035, -0.04), mouth_corner + (sign * 0.04, 0.03)], dimple, 0.025)
        crease([mouth_corner + (sign * 0.01, 0.03), mouth_corner + (sign * 0.04, 0.15)], au["AU15"], 0.02)
        crease([mouth_corner + (sign * 0.03, 0.0), mouth_corner + (sign * 0.13, 0.01)], au["AU20"], 0.018)
    # chin (AU17): raised boss with a crease below the lip and dimpling; lip press (AU23/AU24)
    lip_bottom = lm[57]
    crease([lip_bottom + (-0.12, 0.07), lip_bottom + (0, 0.09), lip_bottom + (0.12, 0.07)], 1.2 * au["AU17"], 0.024)
    for dx, dy in ((-0.07, 0.17), (0.06, 0.18), (0.0, 0.23), (-0.04, 0.26), (0.05, 0.25)):
        crease([lip_bottom + (dx, dy), lip_bottom + (dx + 0.02, dy)], au["AU17"], 0.028)
    press = max(au["AU24"], 0.6 * au["AU23"])
    crease([lm[49] + (0, -0.04), lm[51] + (0, -0.05), lm[53] + (0, -0.04)], 0.8 * press, 0.018, 0.7)
    return layer


def _draw_brows(draw: ImageDraw.ImageDraw, p: _Painter, lm: np.ndarray) -> None:
    app = p.spec.appearance
    colour = tuple(min(h, int(s * 0.45)) for h, s in zip(app.hair, app.skin))
    taper = np.array([0.55, 0.8, 0.95, 1.0, 1.0])
    for indices in ((17, 18, 19, 20, 21), (26, 25, 24, 23, 22)):
        centre = _catmull_rom(lm[list(indices)], closed=False, samples=4)
        half = np.interp(np.linspace(0, 4, len(centre)), np.arange(5), taper) * app.brow_thickness / 2
        outline = np.vstack([centre - np.stack([0 * half, half], 1), (centre + np.stack([0 * half, half], 1))[::-1]])
        p.polygon(draw, outline, colour)


def _draw_eyes(canvas: Image.Image, p: _Painter, lm: np.ndarray, au: dict[str, float]) -> Image.Image:
    app = p.spec.appearance
    draw = ImageDraw.Draw(canvas)
    eyes = [_catmull_rom(lm[36:42], closed=True, samples=5), _catmull_rom(lm[42:48], closed=True, samples=5)]
    for eye in eyes:
        p.polygon(draw, eye, SCLERA)
    irises = canvas.copy()
    iris_draw = ImageDraw.Draw(irises)
    for centre in (NEUTRAL_LANDMARKS[36:42].mean(axis=0), NEUTRAL_LANDMARKS[42:48].mean(axis=0)):
        c = centre + np.asarray(app.gaze)
        p.polygon(iris_draw, _ellipse(c[0], c[1], 0.085, 0.085), app.iris)
        p.polygon(iris_draw, _ellipse(c[0], c[1], 0.038, 0.038), (10, 10, 12))
    mask = p.mask(eyes[0])
    mask.paste(255, mask=p.mask(eyes[1]))
    canvas = Image.composite(irises, canvas, mask)
    draw = ImageDraw.Draw(canvas)
    lash = _shade(app.hair, 0.5)
    for upper, lower in (((36, 37, 38, 39), (39, 40, 41, 36)), ((42, 43, 44, 45), (45, 46, 47, 42))):
        lid = lm[list(upper)]
        p.line(draw, _catmull_rom(lid, closed=False), lash, 0.034)
        p.line(draw, _catmull_rom(lm[list(lower)], closed=False), _shade(app.skin, 0.55), 0.016 + 0.012 * au["AU7"])
        # the lid crease stays above the neutral lid and follows 60 % of the lid's movement: a raised lid
        # (AU5) closes on it, and it fades as the lid retracts
        neutral = NEUTRAL_LANDMARKS[list(upper)]
        crease = neutral + [0.0, -0.06] + [0.0, 0.6] * (lid - neutral)
        p.line(draw, _catmull_rom(crease, closed=False), _shade(app.skin, 0.7), 0.014 * (1 - 0.8 * au["AU5"]) + 0.002)
    return canvas


def _draw_nose(draw: ImageDraw.ImageDraw, p: _Painter, lm: np.ndarray) -> None:
    skin = p.spec.appearance.skin
    for sign, wing in ((-1, lm[31]), (1, lm[35])):
        arc = wing + np.array([(0.0, -0.13), (sign * 0.05, -0.07), (sign * 0.025, 0.0), (-sign * 0.03, 0.02)])
        p.line(draw, _catmull_rom(arc, closed=False), _shade(skin, 0.62), 0.02)
        nostril = (wing + lm[33]) / 2 + (0, -0.005)
        p.polygon(draw, _ellipse(nostril[0], nostril[1], 0.04, 0.022), _shade(skin, 0.35))
    p.line(draw, _catmull_rom(lm[[32, 33, 34]], closed=False), _shade(skin, 0.7), 0.012)


def _draw_mouth(canvas: Image.Image, p: _Painter, lm: np.ndarray, au: dict[str, float]) -> Image.Image:
    app = p.spec.appearance
    lips = _shade((app.skin[0] * 0.8 + 50, app.skin[1] * 0.55, app.skin[2] * 0.58), 1.0)
    draw = ImageDraw.Draw(canvas)
    upper_outer = _catmull_rom(lm[48:55], closed=False, samples=4)
    lower_outer = _catmull_rom(lm[[54, 55, 56, 57, 58, 59, 48]], closed=False, samples=4)
    upper_inner = _catmull_rom(lm[[60, 61, 62, 63, 64]], closed=False, samples=4)
    lower_inner = _catmull_rom(lm[[64, 65, 66, 67, 60]], closed=False, samples=4)
    p.polygon(draw, np.vstack([upper_outer, upper_inner[::-1]]), _shade(lips, 0.88))
    p.polygon(draw, np.vstack([lower_outer, lower_inner[::-1]]), lips)
    inside = np.vstack([upper_inner, lower_inner])
    gap = float(np.max(lm[[65, 66, 67], 1] - lm[[63, 62, 61], 1]))
    if gap > 0.015:
        p.polygon(draw, inside, MOUTH_INSIDE)
        teeth = canvas.copy()
        teeth_draw = ImageDraw.Draw(teeth)
        p.polygon(teeth_draw, np.vstack([upper_inner, (upper_inner + (0, 0.075))[::-1]]), TEETH)
        lower_height = 0.06 * max(au["AU16"], au["AU20"], 0.25)
        p.polygon(teeth_draw, np.vstack([lower_inner, (lower_inner - (0, lower_height))[::-1]]), _shade(TEETH, 0.92))
        canvas = Image.composite(teeth, canvas, p.mask(inside))
        draw = ImageDraw.Draw(canvas)
    line_width = 0.014 + 0.012 * max(au["AU24"], au["AU23"])
    p.line(draw, upper_inner, _shade(lips, 0.45), line_width)
    return canvas


def _side_weights(spec: FaceSpec) -> dict[str, tuple[float, float]]:
    """AU → (weight on the subject's right, weight on the left) for the texture cues."""
    out = {}
    for au in AU_LIST:
        side = spec.au_side.get(au)
        out[au] = (1.0, 1.0) if side is None else ((1.0, 0.0) if side == "right" else (0.0, 1.0))
    return out


def _finish(canvas: Image.Image, spec: FaceSpec, lm: np.ndarray) -> np.ndarray:
    """Downsample over the background, light, blur and add noise: the ``[H, W, 3]`` uint8 output."""
    app = spec.appearance
    size = spec.image_size
    face = canvas.resize((size, size), Image.Resampling.LANCZOS)
    image = Image.alpha_composite(_background(spec).convert("RGBA"), face)
    image = Image.alpha_composite(image, _edge_shading(spec, lm)).convert("RGB")
    if app.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(app.blur))
    pixels = np.asarray(image, dtype=np.float32)
    coords = (np.arange(size, dtype=np.float32) - size / 2) / size
    direction = math.cos(app.light_angle) * coords[None, :] + math.sin(app.light_angle) * coords[:, None]
    light = app.brightness * (1.0 + app.light_strength * direction)
    noise = np.random.default_rng(app.noise_seed).normal(0.0, app.noise, pixels.shape)
    return np.clip(pixels * light[..., None] + noise, 0, 255).astype(np.uint8)


def render_face(spec: FaceSpec) -> SyntheticFace:
    """Draw ``spec``: the image, its exact 68 landmarks, the face box and the AU ground truth."""
    ss = _supersample(spec.image_size)
    p = _Painter(spec, ss)
    lm = deform(spec.au_intensity, spec.au_side)
    au = spec.au_intensity
    canvas = p.layer()
    _draw_head(canvas, p, lm)
    canvas.alpha_composite(_wrinkles(p, lm, au, _side_weights(spec)))
    _draw_brows(ImageDraw.Draw(canvas), p, lm)
    canvas = _draw_eyes(canvas, p, lm, au)
    _draw_nose(ImageDraw.Draw(canvas), p, lm)
    canvas = _draw_mouth(canvas, p, lm, au)
    _draw_hair_front(canvas, p, lm)
    landmarks = face_landmarks(spec)
    outline = np.vstack([lm[0:17], _forehead(lm)]) * np.asarray(spec.appearance.stretch)
    oval = to_image(outline, spec.scale, spec.angle, spec.centre)
    size = spec.image_size
    x1, y1 = np.clip(oval.min(axis=0), 0, size)
    x2, y2 = np.clip(oval.max(axis=0), 0, size)
    return SyntheticFace(
        image=_finish(canvas, spec, lm),
        landmarks=landmarks.astype(np.float32),
        face_box=(float(x1), float(y1), float(x2), float(y2)),
        au_intensity=dict(au),
        au_side=dict(spec.au_side),
        pose={"scale": spec.scale, "angle": spec.angle, "centre": list(spec.centre)},
    )
