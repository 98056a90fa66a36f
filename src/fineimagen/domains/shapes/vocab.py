"""The canonical vocabulary of shapes scenes and the compositional held-out split.

Everything that names an attribute value lives here, so the renderer, the captions, the
evaluator and the held-out split can never disagree.
"""

# the positions are the control grid's cells, shared by every domain
from ...control.grid import POSITIONS, cell_of, position_at, position_of  # noqa: F401

SHAPES = ("circle", "square", "triangle", "star", "heart")
COLORS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SIZES = ("small", "medium", "large")
TEXTURES = ("solid", "striped", "dotted", "checkered")
COUNTS = (1, 2, 3, 4)
BACKGROUNDS = ("white", "black", "gray")
# Spatial relations between two groups: a relation holds when every object of the subject
# group lies on that side of every object of the other group, centroids at least
# RELATION_MARGIN (a fraction of the image side) apart along the relation's axis.
RELATIONS = ("left_of", "right_of", "above", "below")
RELATION_MARGIN = 0.04

# sRGB of each object colour: saturated, hues at least 27 degrees apart, so the hue (which
# survives blending with a grey background and the darker texture shade) names the colour.
COLOR_RGB = {
    "red": (225, 25, 40),
    "orange": (245, 120, 15),
    "yellow": (235, 225, 25),
    "green": (30, 165, 50),
    "cyan": (20, 195, 215),
    "blue": (35, 65, 225),
    "purple": (150, 40, 210),
    "pink": (245, 100, 190),
}
BACKGROUND_RGB = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128)}
TEXTURE_SHADE = 0.5  # textures draw their pattern in the object's colour times this factor

# Object extent (largest side of its bounding box) as a fraction of the image side.
SIZE_FRACTION = {"small": 0.16, "medium": 0.22, "large": 0.29}
SIZE_JITTER = 0.04  # relative; rendered extents stay well inside their class

# Held-out attribute combinations: no training scene contains a group with one of them.
HELDOUT_SHAPE_COLOR = frozenset({
    ("star", "green"), ("heart", "blue"), ("triangle", "pink"),
    ("circle", "orange"), ("square", "purple"),
})
HELDOUT_COUNT_POSITION = frozenset({(2, "bottom right"), (3, "top"), (4, "right")})
HELDOUT_TEXTURE_SHAPE = frozenset({
    ("striped", "star"), ("dotted", "heart"), ("checkered", "circle"),
})

ATTRIBUTES = ("shape", "color", "size", "position", "texture", "count")
VOCAB = {
    "shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS,
    "texture": TEXTURES, "count": COUNTS,
}


def heldout_combinations(group: dict) -> list[str]:
    """Names of the held-out combinations that a (possibly partial) object group uses."""
    found = []
    if (group.get("shape"), group.get("color")) in HELDOUT_SHAPE_COLOR:
        found.append(f"shape x color: {group['color']} {group['shape']}")
    if (group.get("count"), group.get("position")) in HELDOUT_COUNT_POSITION:
        found.append(f"count x position: {group['count']} at {group['position']}")
    if (group.get("texture"), group.get("shape")) in HELDOUT_TEXTURE_SHAPE:
        found.append(f"texture x shape: {group['texture']} {group['shape']}")
    return found
