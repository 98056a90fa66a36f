"""The 3x3 grid of named cells that places objects in every domain ("top left" ...
"bottom right"); coordinates are fractions of the side, y downwards."""

POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # row-major over the 3x3 grid of cells


def cell_of(position: str) -> tuple[int, int]:
    """(row, column) of a named position in the 3x3 grid."""
    index = POSITIONS.index(position)
    return divmod(index, 3)


def position_of(row: int, col: int) -> str:
    return POSITIONS[3 * row + col]


def position_at(x: float, y: float) -> str:
    """The position name of the grid cell holding the point (x, y), fractions of the side."""
    return position_of(min(int(y * 3), 2), min(int(x * 3), 2))
