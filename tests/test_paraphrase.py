"""The free-style phrase bank shares no wording with the training grammar."""

import re

import numpy as np

from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.captions import caption
from fineimagen.domains.shapes.paraphrase import free_caption
from fineimagen.domains.shapes.samples import make_sample
from fineimagen.domains.shapes.scene import sample_scene
from fineimagen.eval import compbench

# the slot words: attribute values and their plurals, count words and digits
SLOTS = {w for values in (vocab.SHAPES, vocab.COLORS, vocab.SIZES, vocab.TEXTURES,
                          vocab.BACKGROUNDS) for v in values for w in (v, v + "s")} | \
    {w for p in vocab.POSITIONS for w in p.split()} | \
    {"one", "two", "three", "four", "1", "2", "3", "4", "a", "an"}


def trigrams(text: str) -> set[tuple[str, ...]]:
    words = ["#" if w in SLOTS else w for w in re.findall(r"[a-z0-9-]+", text.lower())]
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2) if "#" not in words[i:i + 3]}


def test_no_word_trigram_outside_the_slots_is_shared_with_the_training_grammar():
    grammar, free = set(), set()
    for i in range(1500):
        grammar |= trigrams(make_sample(i, 16).caption)
        grammar |= trigrams(make_sample(i, 16, varied=True).caption)  # training's wordings
    for item in compbench.make_evalset(400, "heldout", seed=123):
        grammar |= trigrams(item.prompt)
    for i in range(1500):
        rng = np.random.default_rng(i)
        scene, _ = sample_scene(rng)
        free |= trigrams(free_caption(scene, rng))
        grammar |= trigrams(caption(scene, rng))
    for item in compbench.make_evalset(400, "heldout", seed=123, style="free"):
        free |= trigrams(item.prompt)
    assert len(free) > 300 and len(grammar) > 150
    assert not free & grammar, sorted(free & grammar)[:20]


def test_free_and_grammar_sets_hold_the_same_scenes():
    grammar = compbench.make_evalset(90, "heldout", seed=4)
    free = compbench.make_evalset(90, "heldout", seed=4, style="free")
    assert [g.scene for g in grammar] == [f.scene for f in free]
    assert all(g.prompt != f.prompt for g, f in zip(grammar, free, strict=True))
    assert {f.category for f in free} == set(compbench.CATEGORIES)
