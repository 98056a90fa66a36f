"""`openmoji-coco` (version 1): GenEval's 80 COCO object classes as OpenMoji glyphs.

Each class keeps GenEval's name as its canonical name ("car") and the glyph's Unicode name
as an alias ("automobile"). A class is covered only by a glyph a person would accept for it;
the others are listed in NOT_COVERED with the reason, and their prompts are reported as not
covered, never drawn with a stand-in. Approximate but acceptable glyphs are said in APPROXIMATE
(and in the dataset card, docs/datasets/openmoji-coco.md).
"""

from __future__ import annotations

COCO_VERSION = 1

# GenEval class -> the glyph: its Unicode character name, or "U+XXXX" for an OpenMoji
# extra (private-use code point) that has no Unicode name
COCO_GLYPHS = {
    "person": "standing person", "bicycle": "bicycle", "car": "automobile",
    "motorcycle": "racing motorcycle", "airplane": "airplane", "bus": "bus",
    "train": "train", "truck": "delivery truck", "boat": "sailboat",
    "traffic light": "vertical traffic light", "stop sign": "octagonal sign", "bird": "bird",
    "cat": "cat", "dog": "dog", "horse": "horse", "sheep": "sheep", "cow": "cow",
    "elephant": "elephant", "bear": "bear face", "zebra": "zebra face",
    "giraffe": "giraffe face", "backpack": "school satchel", "umbrella": "umbrella",
    "handbag": "handbag", "tie": "necktie", "suitcase": "luggage", "frisbee": "flying disc",
    "skis": "ski and ski boot", "sports ball": "soccer ball", "kite": "kite",
    "skateboard": "skateboard", "tennis racket": "badminton racquet and shuttlecock",
    "bottle": "bottle with popping cork", "wine glass": "wine glass", "cup": "hot beverage",
    "knife": "hocho", "spoon": "spoon", "bowl": "bowl with spoon", "banana": "banana",
    "apple": "red apple", "sandwich": "sandwich", "orange": "tangerine",
    "broccoli": "broccoli", "carrot": "carrot", "hot dog": "hot dog", "pizza": "slice of pizza",
    "donut": "doughnut", "cake": "birthday cake", "chair": "chair", "couch": "couch and lamp",
    "potted plant": "potted plant", "bed": "bed", "dining table": "U+E200", "toilet": "toilet",
    "tv": "television", "laptop": "personal computer", "computer mouse": "three button mouse",
    "computer keyboard": "keyboard", "cell phone": "mobile phone", "book": "closed book",
    "clock": "alarm clock", "vase": "amphora", "scissors": "black scissors",
    "teddy bear": "teddy bear", "toothbrush": "toothbrush",
}
APPROXIMATE = {
    "bear": "a bear's face, not the whole animal",
    "zebra": "a zebra's face", "giraffe": "a giraffe's face",
    "tennis racket": "a badminton racquet with its shuttlecock (the only racquet glyph)",
    "bowl": "a bowl with a spoon in it", "couch": "a couch with a standing lamp",
    "dining table": "OpenMoji's extra glyph U+E200, a table with two chairs",
    "vase": "an amphora", "bottle": "a bottle with its cork popping",
    "boat": "a sailboat", "sports ball": "a soccer ball",
}
NOT_COVERED = {
    "fire hydrant": "no OpenMoji glyph", "parking meter": "no OpenMoji glyph",
    "bench": "no OpenMoji glyph", "snowboard": "only a snowboarder (a person) is drawn",
    "baseball bat": "only a cricket bat and ball", "baseball glove": "no OpenMoji glyph",
    "surfboard": "only a surfer (a person) is drawn",
    "fork": "only a fork and a knife together", "tv remote": "no OpenMoji glyph",
    "microwave": "no OpenMoji glyph", "oven": "no OpenMoji glyph",
    "toaster": "no OpenMoji glyph", "sink": "no OpenMoji glyph",
    "refrigerator": "no OpenMoji glyph", "hair drier": "no OpenMoji glyph",
}
# GenEval's class order (object_names.txt)
GENEVAL_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop",
    "computer mouse", "tv remote", "computer keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
OPENMOJI_COCO = tuple(c for c in GENEVAL_CLASSES if c in COCO_GLYPHS)  # covered, in order
