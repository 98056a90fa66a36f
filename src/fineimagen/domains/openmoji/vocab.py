"""OpenMoji object vocabularies (`openmoji-100`, `openmoji-all`) and the names of each object.

An object's canonical name is its Unicode character name in lower case ("red apple"); its
other names are the `emoji` package's short name and aliases ("apple"), the paraphrases of
captions. `openmoji-100` (version 1) is a fixed list of object emoji that stay distinct at
16 px (each pair's normalised cross-correlation below 0.8 on light gray, `tests/
test_openmoji.py`), taken in turn from animals, plants, food, vehicles, buildings, tools,
instruments, sports and household things. `openmoji-coco` (coco.py) is GenEval's COCO
classes that have a faithful glyph, named as GenEval names them. `openmoji-all` is every
emoji of one code point (an optional U+FE0F aside) that OpenMoji draws and whose name says
it is no person, face, body part, flag, keycap, letter, sign, zodiac sign or symbol
(`_IS_NOT_AN_OBJECT`, rules on the name: a few non-objects may pass them).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from ...errors import InputError
from .coco import COCO_GLYPHS, OPENMOJI_COCO

VOCAB_VERSION = 1
OPENMOJI_100 = (
    "dog", "evergreen tree", "red apple", "bicycle", "house building", "hammer", "guitar",
    "soccer ball", "chair", "cat", "deciduous tree", "banana", "automobile", "european castle",
    "wrench", "violin", "american football", "bed", "horse", "palm tree", "grapes", "bus",
    "church", "key", "trumpet", "baseball", "teddy bear", "cow", "cactus", "watermelon",
    "fire engine", "tent", "lock", "drum with drumsticks", "bowling", "balloon", "pig",
    "sunflower", "cherries", "tractor", "mosque", "paperclip", "saxophone",
    "tennis racquet and ball", "wrapped present", "mouse", "tulip", "strawberry", "airplane",
    "pencil", "musical keyboard", "ice skate", "candle", "rabbit", "rose", "pineapple",
    "rocket", "magnet", "banjo", "kite", "alarm clock", "elephant", "maple leaf", "lemon",
    "helicopter", "electric light bulb", "accordion", "black telephone", "dromedary camel",
    "mushroom", "carrot", "sailboat", "umbrella", "mobile phone", "turtle", "four leaf clover",
    "ear of maize", "ship", "axe", "books", "snail", "potted plant", "broccoli",
    "steam locomotive", "toolbox", "television", "snake", "hot pepper", "racing motorcycle",
    "camera", "octopus", "avocado", "police car", "eyeglasses", "crab", "aubergine",
    "ambulance", "t-shirt", "fish", "slice of pizza",
)
VOCABULARIES = ("openmoji-100", "openmoji-all", "openmoji-coco")
_IS_NOT_AN_OBJECT = re.compile(
    r"\b(face|person|people|man|woman|men|women|boy|girl|child|baby|family|couple|hand|"
    r"hands|finger|fingers|fist|thumbs|ear(?! of)|nose|eye|eyes|mouth|tongue|leg|foot|arm|"
    r"bone|adult|older|pregnant|breast-feeding|angel|christmas|claus|superhero|supervillain|"
    r"bride|turban|bearded|dancer|runner|pedestrian|surfer|swimmer|skier|snowboarder|golfer|"
    r"lifter|bicyclist|wrestlers|fencer|juggling|bowing|levitating|speaking|bust|busts|"
    r"footprints|officer|guardsman|worker|pilot|cook|farmer|judge|astronaut|singer|student|"
    r"teacher|scientist|artist|mechanic|aquarius|aries|taurus|gemini|cancer|leo|virgo|"
    r"libra|scorpius|sagittarius|capricorn|pisces|ophiuchus|suit|lip|claim|chart|"
    r"brain|heart|flag|keycap|letter|latin|sign|symbol|button|arrow|mark|square|circle|"
    r"triangle|diamond|digit|number|input|squared|skin tone|zodiac|sparkle|sparkles|"
    r"kiss|speech|thought|zzz|ogre|goblin|ghost|alien|robot|skull|clown|santa|mage|fairy|"
    r"vampire|merperson|elf|genie|zombie|troll|ninja|detective|guard|construction worker|"
    r"prince|princess|cat with|moon face|sun with face|cloud with|o'clock|thirty)\b")


def character(name: str) -> str:
    """The emoji of a canonical name ("red apple" -> U+1F34E; openmoji-coco's class names
    by their glyphs: "car" -> U+1F697)."""
    glyph_name = COCO_GLYPHS.get(name, name)
    if glyph_name.startswith("U+"):  # an OpenMoji extra: a private-use code point
        return chr(int(glyph_name[2:], 16))
    try:
        return unicodedata.lookup(glyph_name.upper())
    except KeyError:
        raise InputError(f"no emoji is named {name!r}") from None


def vocabulary(name: str) -> tuple[str, ...]:
    """The canonical object names of a vocabulary (`openmoji-100`, `openmoji-all`, or
    `openmoji-coco`: GenEval's classes that have a glyph, coco.py)."""
    if name == "openmoji-100":
        return OPENMOJI_100
    if name == "openmoji-coco":
        return OPENMOJI_COCO
    if name == "openmoji-all":
        return _all_objects()
    raise InputError(f"unknown vocabulary {name!r} (choose from {', '.join(VOCABULARIES)})")


@functools.cache
def _all_objects() -> tuple[str, ...]:
    import emoji

    from .render import has_glyph

    names = []
    for text in emoji.EMOJI_DATA:
        points = text.replace("\ufe0f", "")
        if len(points) != 1 or not points.isprintable() or ord(points) < 0x2000:
            continue
        name = unicodedata.name(points, "").lower()
        if name and not _IS_NOT_AN_OBJECT.search(name) and has_glyph(points):
            names.append(name)
    return tuple(sorted(set(names)))


@functools.cache
def other_names(name: str) -> tuple[str, ...]:
    """The object's other names from the `emoji` package (short name and aliases, words
    joined by spaces; none with digits), without the canonical name: "red apple" ->
    ("apple",), "automobile" -> ("car", "red car")."""
    import emoji

    ch = character(name)
    data = emoji.EMOJI_DATA.get(ch) or emoji.EMOJI_DATA.get(ch + "\ufe0f") or {}
    glyph_name = COCO_GLYPHS.get(name, name)  # a class's glyph's Unicode name is an alias
    found = [glyph_name] * (not glyph_name.startswith("U+")) + [data.get("en", "")] + \
        list(data.get("alias", []))
    words = []
    for alias in found:
        said = alias.strip(":").replace("_", " ").lower()
        if said and said != name and said not in words and re.fullmatch(r"[a-z '&-]+", said):
            words.append(said)
    return tuple(words)
