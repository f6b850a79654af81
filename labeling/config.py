"""The Label Studio labelling config for a detector: one RectangleLabels over one Image.

Example::

    >>> xml = label_config({0: "scratch", 1: "dent"})
    >>> check_label_config(xml, {0: "scratch", 1: "dent"})
    []
    >>> golden = label_config({0: "scratch"}, reference=True)   # a model that judges against a golden image
    >>> '<Image name="reference" value="$reference"' in golden
    True
    >>> check_label_config(xml.replace('toName="image"', 'toName="img"'), {0: "scratch", 1: "dent"})[0]
    'RectangleLabels name="label" points toName="img", but the pre-annotations name to_name="image"'

Why the check matters: Label Studio shows a pre-annotation only when its `from_name` is a
control tag's name, its `to_name` that tag's `toName`, and its labels among the tag's
`<Label value=...>`; otherwise it silently shows nothing, and labellers start from scratch.

A model exported from a reference recipe judges a frame against its station's golden image;
a labeller deciding whether a spot is a defect needs that image too, so its config shows the
golden image (`$reference` in the task) beside the frame. Labels have colours of their own
that stand out on the dark green and black of a PCB (Label Studio's default palette has dark
blues and greens that vanish there), and boxes are drawn thicker than its 1 px default.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

FROM_NAME = "label"  # the RectangleLabels tag's name: `from_name` of every region qc sends
TO_NAME = "image"  # the Image tag's name: `to_name`; its value is $image, the task's data URL
REFERENCE_NAME = "reference"  # the golden image's Image tag, for reference models; its value is $reference

# Bright, saturated and far apart in hue: readable on a dark board (and on a pale one, with the
# thicker stroke). A model with more classes than colours reuses them in order.
COLOURS = ("#FFD600", "#00E5FF", "#FF4081", "#76FF03", "#FF9100", "#E040FB", "#FFFFFF", "#FF1744",
           "#18FFFF", "#FFEA00")
STROKE_WIDTH = 3


def label_config(names: Mapping[int, str], *, reference: bool = False) -> str:
    """The config for a model with classes `names`; `reference`: the model judges each frame
    against a golden image, shown beside the frame (the task's `reference` data)."""
    labels = "\n    ".join(f"<Label value={quoteattr(names[i])} background={quoteattr(COLOURS[n % len(COLOURS)])}/>"
                          for n, i in enumerate(sorted(names)))
    frame = f'<Image name="{TO_NAME}" value="$image" zoom="true"/>'
    if reference:
        frame = ('<View style="display: flex; gap: 8px;">\n'
                 f'    <View style="flex: 1;"><Header value="Frame"/>{frame}</View>\n'
                 '    <View style="flex: 1;"><Header value="Golden image (what the model compared the frame with)"/>'
                 f'<Image name="{REFERENCE_NAME}" value="$reference" zoom="true"/></View>\n  </View>')
    return (f'<View>\n  {frame}\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="{STROKE_WIDTH}">\n'
            f'    {labels}\n  </RectangleLabels>\n</View>')


def check_label_config(xml: str, names: Mapping[int, str], *, reference: bool = False) -> list[str]:
    """What in an existing project's config would hide qc's pre-annotations or lose classes
    (or, for a `reference` model, the golden image); empty when it fits the model."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        return [f"the project's label config is not XML ({error})"]
    images = {tag.get("name") for tag in root.iter("Image")}
    rectangles = [tag for tag in root.iter() if tag.tag in ("RectangleLabels", "Rectangle")]
    problems = []
    if TO_NAME not in images:
        problems.append(f'no <Image name="{TO_NAME}">; it has Image tags named {sorted(n or "" for n in images)}')
    if reference and not any(tag.get("name") == REFERENCE_NAME and tag.get("value") == "$reference"
                             for tag in root.iter("Image")):
        problems.append(f'no <Image name="{REFERENCE_NAME}" value="$reference">: the model judges each frame '
                        "against a golden image, and labellers would not see it")
    ours = [tag for tag in rectangles if tag.get("name") == FROM_NAME]
    if not ours:
        found = sorted(tag.get("name") or "" for tag in rectangles)
        problems.append(f'no RectangleLabels name="{FROM_NAME}" (the pre-annotations\' from_name); '
                        f"its rectangle tags are named {found}")
        return problems
    tag = ours[0]
    if tag.get("toName") != TO_NAME:
        problems.append(f'RectangleLabels name="{FROM_NAME}" points toName="{tag.get("toName")}", '
                        f'but the pre-annotations name to_name="{TO_NAME}"')
    labels = {value for label in tag.iter("Label") if (value := label.get("value"))}
    wanted = set(names.values())
    if wanted - labels:
        problems.append(f"classes of the model missing from its labels: {', '.join(sorted(wanted - labels))}")
    if labels - wanted:
        problems.append(f"labels the model does not know (they could not become training labels): "
                        f"{', '.join(sorted(labels - wanted))}")
    return problems
