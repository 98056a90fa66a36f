"""Reading ordinary language into scene specs (domains/shapes/reading.py), with what it cannot
read reported; phrasings written here, apart from the eval sets' phrase banks."""

import pytest

from fineimagen.domains.shapes.plan import PlanError, plan_with_report
from fineimagen.domains.shapes.reading import color_name, read_free


@pytest.mark.parametrize("prompt, spec", [
    ("Please draw three crimson squares in the upper right corner.",
     {"objects": [{"shape": "square", "color": "red", "position": "top right", "count": 3}]}),
    ("There is a tiny blue heart covered in stripes near the bottom left",
     {"objects": [{"shape": "heart", "color": "blue", "size": "small",
                   "position": "bottom left", "texture": "striped", "count": 1}]}),
    ("A picture of two green triangles and a big yellow star on a black backdrop",
     {"background": "black", "objects": [{"shape": "triangle", "color": "green", "count": 2},
                                          {"shape": "star", "color": "yellow",
                                           "size": "large", "count": 1}]}),
    ("a circle that is purple, halfway up the right edge",
     {"objects": [{"shape": "circle", "color": "purple", "position": "right", "count": 1}]}),
    ("four small hearts positioned left of a red square",
     {"objects": [{"shape": "heart", "size": "small", "count": 4},
                  {"shape": "square", "color": "red", "count": 1}],
      "relations": [{"subject": 0, "relation": "left_of", "object": 1}]}),
    ("a set of three stars plus a navy disc, set against plain grey",
     {"background": "gray", "objects": [{"shape": "star", "count": 3},
                                         {"shape": "circle", "color": "blue", "count": 1}]}),
])
def test_ordinary_phrasings_read_as_their_scene(prompt, spec):
    scene, unread = plan_with_report(prompt)
    assert scene.to_spec() == spec and unread == []


def test_what_cannot_be_read_is_reported_and_grammar_prompts_read_as_before():
    scene, unread = plan_with_report("a wooden star at the top")
    assert unread == ["wooden"] and scene.to_spec()["objects"][0]["position"] == "top"
    assert plan_with_report("two red circles at the top left")[1] == []
    assert read_free("a star dead centre").text == "a star in the center"
    with pytest.raises(PlanError, match="no shape"):
        plan_with_report("something lovely, please")
    assert color_name("scarlet") == "red" and color_name("grey") is None
    assert color_name("navy") == "blue" and color_name("star") is None


def test_everyday_size_and_texture_words_are_read():
    for prompt, words in [("a stripy star", "a striped star"),
                          ("two spotty hearts", "two dotted hearts"),
                          ("a tartan square", "a checkered square"),
                          ("one unpatterned circle", "one solid circle"),
                          ("a mid-sized disc", "a medium disk"),
                          ("a jumbo polka-dotted triangle", "a large dotted triangle")]:
        reading = read_free(prompt)
        assert (reading.text, reading.unread) == (words, []), prompt
    # the chessboard clause keeps its grammar phrase (not cut to a lone adjective)
    assert read_free("a circle patterned like a chessboard").text == \
        "a circle with a checkerboard pattern"


def test_prose_around_the_scene_is_left_out_and_reported():
    from fineimagen.domains.shapes.plan import plan_with_report
    from fineimagen.domains.shapes.reading import read_free

    story = ("The afternoon was quiet and the light was soft. Somebody had left the window "
             "open, so the curtains moved a little. Nothing else happened for a long while. ")
    scene, unread = plan_with_report(story * 20 + "Two red circles at the top left.")
    assert [(g.shape, g.color, g.count, g.position) for g in scene.groups] == \
        [("circle", "red", 2, "top left")]
    assert {"afternoon", "curtains", "window"} <= set(unread)
    # cut mid-sentence: 'a little' is a count and a size with no shape, not an object
    scene, _ = plan_with_report("the curtains moved a little a blue star is to the left of "
                                "a large green square")
    assert [(g.shape, g.color) for g in scene.groups] == [("star", "blue"), ("square", "green")]
    # a wholly read sentence without a shape adds to the object before it
    assert read_free("There is a red circle. It is at the top left.").unread == []
    scene, _ = plan_with_report("There is a red circle. It is at the top left.")
    assert scene.groups[0].position == "top left"
