"""The Label Studio labelling config for a detector: one RectangleLabels over one Image.

Example::

    >>> xml = label_config({0: "scratch", 1: "dent"})
    >>> check_label_config(xml, {0: "scratch", 1: "dent"})
    []
    >>> check_label_config(xml.replace('toName="image"', 'toName="img"'), {0: "scratch", 1: "dent"})[0]
    'RectangleLabels name="label" points toName="img", but the pre-annotations name to_name="image"'

Why the check matters: Label Studio shows a pre-annotation only when its `from_name` is a
control tag's name, its `to_name` that tag's `toName`, and its labels among the tag's
`<Label value=...>`; otherwise it silently shows nothing, and labellers start from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

FROM_NAME = "label"  # the RectangleLabels tag's name: `from_name` of every region qc sends
TO_NAME = "image"  # the Image tag's name: `to_name`; its value is $image, the task's data URL


def label_config(names: Mapping[int, str]) -> str:
    labels = "\n    ".join(f"<Label value={quoteattr(names[i])}/>" for i in sorted(names))
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n    {labels}\n'
            f'  </RectangleLabels>\n</View>')


def check_label_config(xml: str, names: Mapping[int, str]) -> list[str]:
    """What in an existing project's config would hide qc's pre-annotations or lose classes;
    empty when it fits the model's classes."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        return [f"the project's label config is not XML ({error})"]
    images = {tag.get("name") for tag in root.iter("Image")}
    rectangles = [tag for tag in root.iter() if tag.tag in ("RectangleLabels", "Rectangle")]
    problems = []
    if TO_NAME not in images:
        problems.append(f'no <Image name="{TO_NAME}">; it has Image tags named {sorted(n or "" for n in images)}')
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
