"""Reading ordinary language into the planner's grammar: `read_free(prompt)` rewrites a
prompt's free wording into the caption grammar's (captions.py) and reports each phrase
it could not place, so that `plan.plan_scene` can read it.

General English knowledge, not any one phrase bank: sentence frames ("There is ...",
"Please draw ...") and connectives ("as well as", "plus") dropped or made "and"; relative
clauses ("that is red", "covered in stripes", "patterned like a chessboard") turned into the
grammar's attribute phrases; places read compositionally from direction words ("up in the
left corner" -> top left, "halfway down the left edge" -> left, "dead centre" -> center);
relations from direction words followed by "of"/"than" or from over/under words; colour
names (the XKCD colour survey's one-word names, CC0, `domains/shapes/color_names.json` made by
`tools/make_color_names.py`) mapped to the nearest palette colour by hue;
other unknown words and short phrases (sizes, textures, shapes, counts) matched to the
grammar's words by the frozen MiniLM's sentence embeddings, above MATCH_THRESHOLD.
Anything else is reported ("could not read: 'velvet'").
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from . import vocab
from .lexicon import lexicon, phrase_words

MATCH_THRESHOLD = 0.62  # cosine of MiniLM sentence embeddings, unknown phrase vs grammar word
MIN_CHROMA = 25.0  # a colour name paler than this (CIELAB chroma) names no palette colour
IGNORED = {"the", "that", "which", "is", "are", "there", "exactly", "just", "only",
           "single", "separate", "precisely", "some", "in", "very", "also", "each", "both",
           "shape", "shapes", "figure", "figures", "object", "objects", "item", "items",
           "one's", "it", "they", "of"}
FRAMES = re.compile(
    r"^(?:(?:please|kindly)\s+)?(?:(?:can|could|would) you\s+)?"
    r"(?:(?:draw|paint|render|generate|create|make|show(?: me)?|give me|depict|"
    r"i(?:'d| would) like(?: to see)?|i want(?: to see)?|i need)\s+)?"
    r"(?:(?:there (?:is|are))|(?:(?:the|this|a|an) (?:picture|image|drawing|illustration|"
    r"render|scene|painting|photo)(?: (?:shows|showing|contains|containing|has|with|of|"
    r"depicts|depicting|featuring))?))?\s*")
CONNECTIVES = re.compile(r"\s*,?\s*\b(?:as well as|together with|along with|alongside|plus|"
                         r"and also|in addition to|next to which)\b\s*,?\s*")
BACKGROUND = re.compile(
    r"[\s,]*(?:(?:on|against|with|over|set against|in front of)\s+)?(?:an?\s+|the\s+)?"
    r"(?:plain\s+|solid\s+|flat\s+)?(white|black|gray)(?:\s+(?:background|backdrop|canvas|"
    r"backround|ground))?\s*$")
TEXTURE_CLAUSES = [
    (re.compile(r"\b(?:covered|decorated|filled|painted|patterned|marked)\s+(?:in|with)\s+"
                r"(?:thin\s+|thick\s+)?stripes\b"), "with stripes"),
    (re.compile(r"\b(?:covered|decorated|filled|painted|patterned|marked)\s+(?:in|with)\s+"
                r"(?:polka\s+)?(?:dots|spots)\b"), "with dots"),
    (re.compile(r"\b(?:covered|decorated|filled|painted|patterned|marked)\s+(?:in|with)\s+"
                r"checks\b|\bpatterned\s+like\s+an?\s+(?:chessboard|checkerboard|chequerboard)"
                r"\b"), "with a checkerboard pattern"),
    (re.compile(r"\b(?:without|with no)\s+(?:any\s+)?(?:a\s+)?pattern\b"), "in a solid colour"),
]
# everyday adjectives for the grammar's sizes and textures that the MiniLM match misses
# (its cosine for 'stripy' / 'striped' is under MATCH_THRESHOLD): general English, written
# wider than any eval set (added after the free-style bench misread 'stripy' and 'spotty')
EVERYDAY_WORDS = {
    "small": ("petite", "miniature", "mini", "wee", "smallish", "undersized", "small-sized",
              "teeny", "diminutive"),
    "medium": ("mid-sized", "midsized", "mid-size", "medium-sized", "medium-size",
               "average-sized", "average-size", "middling", "moderate-sized", "regular-sized",
               "normal-sized"),
    "large": ("huge", "giant", "enormous", "oversized", "massive", "large-sized", "sizable",
              "sizeable", "jumbo", "hefty", "gigantic", "immense"),
    "striped": ("stripy", "stripey", "streaked", "streaky", "banded", "pinstriped",
                "pin-striped", "barred"),
    "dotted": ("spotty", "speckled", "polka-dot", "polka-dotted", "dotty", "freckled",
               "dappled", "flecked"),
    "checkered": ("chequered", "chequerboard", "plaid", "tartan", "gingham"),  # 'checkerboard'
    # stays: TEXTURE_CLAUSES write "with a checkerboard pattern", a grammar phrase
    "solid": ("unpatterned", "patternless", "plain-coloured", "plain-colored",
              "single-coloured", "single-colored", "flat-coloured", "flat-colored"),
}
EVERYDAY = {w: value for value, words in EVERYDAY_WORDS.items() for w in words}
# an article before a collective noun counts nothing itself: "a group of four" is four,
# "a couple of" two
QUANTITIES = re.compile(r"\ban?\s+(group|set|couple|pair|trio|quartet|row|cluster|bunch)"
                        r"\s+of\s+")
QUANTITY_WORDS = {"couple": "two", "pair": "two", "trio": "three", "quartet": "four"}
CLAUSE = re.compile(r"\b(?:that|which)\s+(?:is|are)\s+")
COLOR_AFTER = re.compile(r"\b(coloured|colored|painted|in)\s+([a-z-]+)\b")
# places: a preposition, then words among which direction words say the cell
PLACE = re.compile(
    r"\b(?:halfway\s+(?:down|up|along|across)|(?:up|down|over|right|smack)\s+in|in|at|on|"
    r"near|toward|towards|along|by|around|dead|across)\b(?:\s+(?:the|a))?"
    r"((?:\s+(?:top|upper|bottom|lower|left|right|middle|centre|center|left-hand|"
    r"right-hand|side|edge|corner|half|part|area|end|region))+)(?!\s+(?:of|than)\b)")
VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
HORIZONTAL = {"left": "left", "right": "right", "left-hand": "left", "right-hand": "right"}
RELATIONS = [
    (re.compile(r"\s+(?:(?:is|are)\s+)?(?:positioned|placed|sitting|located|situated|"
                r"standing|lying|found)?\s*(?:(?:to|on|at)\s+the\s+)?(left|right)(?:\s+"
                r"(?:hand\s+)?side)?\s+of\s+"), None),
    (re.compile(r"\s+(?:(?:is|are)\s+)?(?:positioned|placed|sitting|located|situated|"
                r"standing|lying|found)?\s*(?:higher(?:\s+up)?\s+than|over|above|on top of)"
                r"\s+"), "above"),
    (re.compile(r"\s+(?:(?:is|are)\s+)?(?:positioned|placed|sitting|located|situated|"
                r"standing|lying|found)?\s*(?:lower(?:\s+down)?\s+than|underneath|beneath|"
                r"under|below)\s+"), "below"),
]


@dataclass
class Reading:
    text: str  # the prompt in the grammar's words, for plan.plan_scene
    unread: list[str]  # phrases it could not place


SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def read_free(prompt: str) -> Reading:
    """The prompt rewritten into the grammar's words, and what could not be read. Read a
    sentence at a time: a sentence that names no shape and is not wholly read (prose around
    the scene, e.g. 300 words of a story before "two red circles at the top") is left out,
    its unread words reported; one that names none but is wholly read ("It is at the top.")
    stays and adds to the object before it."""
    sentences = [s for s in SENTENCE_END.split(" ".join(prompt.split())) if s.strip()]
    texts, unread, background = [], [], ""
    for sentence in sentences or [prompt]:
        text, missed, said_background = _read_sentence(sentence)
        if missed and len(sentences) > 1 and not _names_a_shape(text):
            unread.extend(missed)
            continue
        texts.append(text)
        unread.extend(missed)
        background = said_background or background
    return Reading(" ".join(t for t in texts if t) + background, unread)


def _names_a_shape(text: str) -> bool:
    table = lexicon()
    return any(table.get((w,), ("",))[0] == "shape" for w in phrase_words(text))


def _read_sentence(sentence: str) -> tuple[str, list[str], str]:
    """One sentence in the grammar's words, the words it could not place, and the
    background it names (' on a white background' or '')."""
    text = " ".join(sentence.lower().replace("grey", "gray").split()).rstrip(".!?; ")
    text = FRAMES.sub("", text, count=1)
    background = ""
    found = BACKGROUND.search(text)
    if found:
        background = f" on a {found.group(1)} background"
        text = text[: found.start()]
    text = CONNECTIVES.sub(" and ", text)
    text = QUANTITIES.sub(lambda m: QUANTITY_WORDS.get(m.group(1), "") + " ", text)
    for pattern, phrase in TEXTURE_CLAUSES:
        text = pattern.sub(phrase, text)
    text = CLAUSE.sub("", text)
    for pattern, relation in RELATIONS:
        text = pattern.sub(lambda m, r=relation: f" {_relationwords(m, r)} ", text)
    text = PLACE.sub(lambda m: " " + _place(m.group(0)) + " ", text)
    text = COLOR_AFTER.sub(lambda m: m.group(2) if _is_color(m.group(2)) else m.group(0), text)
    table = lexicon()
    longest = max(len(k) for k in table)
    words = [w if (w,) in table else EVERYDAY.get(w) or color_name(w) or w
             for w in phrase_words(text)]
    out, unread, i = [], [], 0  # out: (grammar phrase, its kind)
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            if tuple(words[i:i + n]) in table:
                out.append((" ".join(words[i:i + n]), table[tuple(words[i:i + n])][0]))
                i += n
                break
        else:
            word = words[i]
            if word not in IGNORED:
                match = _match_span(words, i, table)
                if match:
                    said, n = match
                    out.append((said, table.get(tuple(phrase_words(said)), ("",))[0]))
                    i += n
                    continue
                unread.append(word)
            i += 1
    out = _drop_strays(out, unread)
    return " ".join(phrase for phrase, _ in out).replace(" ,", ","), unread, background


def _drop_strays(out: list[tuple[str, str]], unread: list[str]) -> list[tuple[str, str]]:
    """Leave out a count that no shape follows before the next count or the end, with the
    words after it ('moved a little, a blue star': 'a little' is no object), reported."""
    kept, stray = [], None  # stray: where in `kept` a count still waits for its shape
    for phrase, kind in out:
        if kind == "count" and stray is not None:
            unread.extend(p for p, _ in kept[stray:])
            del kept[stray:]
        if kind == "count":
            stray = len(kept)
        elif kind == "shape":
            stray = None
        kept.append((phrase, kind))
    if stray is not None:
        unread.extend(p for p, _ in kept[stray:])
        del kept[stray:]
    return kept


def _is_color(word: str) -> bool:
    return word in vocab.COLORS or color_name(word) is not None


def _relationwords(m: re.Match, relation: str | None) -> str:
    if relation is None:
        return f"to the {m.group(1)} of"
    return relation


def _place(span: str) -> str:
    """A place phrase read from its direction words: 'up in the left corner' -> 'at the top
    left'; 'halfway down the left edge' -> 'on the left'; 'dead centre' -> 'in the center'."""
    words = re.findall(r"[a-z-]+", span)
    halfway = "halfway" in words
    vertical = next((VERTICAL[w] for w in words if w in VERTICAL), None)
    if vertical is None and not halfway:
        vertical = "top" if words[0] == "up" else "bottom" if words[0] == "down" else None
    horizontal = next((HORIZONTAL[w] for w in words if w in HORIZONTAL), None)
    if vertical and horizontal:
        position = f"{vertical} {horizontal}"
    else:
        position = vertical or horizontal or "center"
    from .captions import POSITION_PHRASES

    assert position in vocab.POSITIONS
    return POSITION_PHRASES[position][0]


@functools.cache
def _palette_lab():
    import numpy as np
    from skimage.color import rgb2lab

    names = list(vocab.COLOR_RGB)
    rgb = np.array([vocab.COLOR_RGB[c] for c in names], np.float32)[None] / 255
    return names, rgb2lab(rgb)[0]


@functools.cache
def color_name(word: str) -> str | None:
    """The palette colour a colour name means ('scarlet' -> red), by the nearest hue in
    CIELAB among the palette's, or None (not a colour name, or too pale: grey, beige)."""
    import numpy as np
    from skimage.color import rgb2lab

    rgb = _color_names().get(word)
    if rgb is None:
        return None
    lab = rgb2lab(np.array(rgb, np.float32)[None, None] / 255)[0, 0]
    if np.hypot(lab[1], lab[2]) < MIN_CHROMA:
        return None
    names, palette = _palette_lab()
    hue = np.arctan2(lab[2], lab[1])
    hues = np.arctan2(palette[:, 2], palette[:, 1])
    gap = np.abs(np.angle(np.exp(1j * (hues - hue))))
    return names[int(gap.argmin())]


@functools.cache
def _color_names() -> dict[str, tuple[int, int, int]]:
    import json
    from importlib import resources

    text = resources.files("fineimagen").joinpath("domains/shapes/color_names.json").read_text()
    return {k: tuple(v) for k, v in json.loads(text).items()}


def _match_span(words: list[str], i: int, table) -> tuple[str, int] | None:
    """The grammar phrase (size, texture, shape or count) nearest in meaning to words[i:i+n]
    (n from 3 down to 1, never over a word that starts a phrase the grammar knows), above
    MATCH_THRESHOLD."""
    starts = _phrase_starts()
    for n in (3, 2, 1):
        if i + n > len(words) or any(w in starts for w in words[i + 1: i + n]):
            continue
        phrase = " ".join(words[i:i + n])
        said, score = _nearest(phrase)
        if score >= MATCH_THRESHOLD:
            return said, n
    return None


@functools.cache
def _phrase_starts() -> frozenset[str]:
    return frozenset(k[0] for k in lexicon())


@functools.cache
def _nearest(phrase: str) -> tuple[str, float]:
    keys, matrix = _grammar_embeddings()
    score = _embed((phrase,))[0] @ matrix.T
    k = int(score.argmax())
    return keys[k], float(score[k])


@functools.cache
def _grammar_embeddings():
    kinds = ("size", "texture", "texture_after", "shape", "count")
    keys = sorted(" ".join(k) for k, (kind, _) in lexicon().items() if kind in kinds)
    return keys, _embed(tuple(keys))


def _embed(phrases: tuple[str, ...]):
    """MiniLM sentence embeddings (mean of the last layer, unit length) [N, 384]."""
    import torch

    model, tokenizer = _minilm()
    batch = tokenizer(list(phrases), padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    mean = (states * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(mean, dim=-1).numpy()


@functools.cache
def _minilm():
    from transformers import AutoModel, AutoTokenizer

    from ...models.text_encoders import minilm_path

    path = minilm_path()
    return AutoModel.from_pretrained(path).float().eval(), AutoTokenizer.from_pretrained(path)
