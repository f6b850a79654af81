"""Reference-image inspection, piece by piece: alignment, the composed input, the input
contract in a model's metadata, references in synthetic data, dataset versions and recipes,
and the verdict of a frame that does not align. The service's side: test_service_references.py."""

from __future__ import annotations

import hashlib
import json
import shutil

import cv2
import numpy as np
import pytest

from inspection.data.formats.yolo import reference_path_for
from inspection.data.synth.generator import make_sample, sample_seed, write_dataset
from inspection.detect.reference import (
    CHANNELS,
    InputContract,
    Motion,
    align,
    compose,
)
from inspection.detections import Detections
from inspection.errors import ConfigError, DatasetError, ModelError
from inspection.rules import CANNOT_ALIGN_RULE, DEFAULT_MIN_ALIGNMENT, StationRules, Verdict, decide


def part(seed: int = 3, size: int = 320, *, good: bool = False):
    return make_sample(sample_seed(7, seed), width=size, height=size, surface="pcb", good=good, reference=True)


def shifted(image: np.ndarray, dx: float, dy: float, angle: float = 0.0) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def same(a: Detections, b: Detections) -> bool:
    return np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.confidence, b.confidence) and len(a) > 0


# -- alignment ----------------------------------------------------------------------------


@pytest.mark.parametrize(("dx", "dy"), [(0.0, 0.0), (5.0, -3.0), (-11.5, 7.25)])
def test_alignment_finds_how_far_the_frame_moved_from_its_reference(dx, dy):
    sample = part()
    frame = shifted(sample.image, dx, dy)
    aligned = align(frame, sample.reference)
    assert aligned.shift == pytest.approx((dx, dy), abs=0.5)
    assert aligned.score > 0.9
    # The reference was moved onto the frame: away from the defects, they now agree.
    agree = cv2.absdiff(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), aligned.reference)[40:-40, 40:-40]
    assert np.median(agree) < 6


def test_a_large_frame_is_aligned_at_reduced_size_and_the_shift_scaled_back():
    sample = part(size=320)
    big_reference = cv2.resize(sample.reference, (1600, 1600), interpolation=cv2.INTER_CUBIC)
    big_frame = shifted(cv2.resize(sample.image, (1600, 1600), interpolation=cv2.INTER_CUBIC), 24.0, -16.0)
    aligned = align(big_frame, big_reference)
    assert aligned.reference.shape == big_frame.shape[:2]
    assert aligned.shift == pytest.approx((24.0, -16.0), abs=2.0)


def test_a_reference_of_another_size_is_fitted_to_a_frame_decoded_smaller():
    sample = part(size=320)
    half = cv2.resize(sample.image, (160, 160), interpolation=cv2.INTER_AREA)  # a 1/2 decode
    aligned = align(half, sample.reference)
    assert aligned.reference.shape == (160, 160) and aligned.score > 0.9


def test_euclidean_motion_also_undoes_a_small_rotation():
    sample = part(size=320)
    frame = shifted(sample.image, 3.0, 2.0, angle=1.5)
    plain = align(frame, sample.reference)
    turned = align(frame, sample.reference, motion=Motion.EUCLIDEAN)
    assert abs(turned.angle) == pytest.approx(1.5, abs=0.3)
    assert turned.score > plain.score


def test_a_frame_of_another_part_does_not_align():
    mine, other = part(seed=3), part(seed=4)
    assert align(other.image, mine.reference).score < DEFAULT_MIN_ALIGNMENT
    flat = np.full((320, 320, 3), 128, np.uint8)  # a covered lens: nothing to align on
    assert align(flat, mine.reference).score < DEFAULT_MIN_ALIGNMENT


def test_the_search_is_bounded_so_a_periodic_pattern_cannot_match_far_away():
    stripes = np.tile(np.repeat(np.array([40, 220], np.uint8), 8), 20)[None, :].repeat(320, 0)
    stripes = cv2.cvtColor(stripes, cv2.COLOR_GRAY2BGR)
    aligned = align(shifted(stripes, 3.0, 0.0), stripes, max_shift=0.02)
    assert abs(aligned.shift[0]) <= 0.02 * 320 + 1


# -- the composed input and the contract --------------------------------------------------


def test_the_composed_input_is_frame_reference_and_their_difference():
    sample = part()
    aligned = align(sample.image, sample.reference)
    composed = compose(sample.image, aligned.reference)
    grey = cv2.cvtColor(sample.image, cv2.COLOR_BGR2GRAY)
    assert composed.shape == (*grey.shape, 3) and composed.dtype == np.uint8
    assert np.array_equal(composed[..., 0], grey)
    assert np.array_equal(composed[..., 2], cv2.absdiff(grey, composed[..., 1]))
    # The defects are what differs: the difference plane is brightest inside their boxes.
    inside = np.zeros(grey.shape, bool)
    for x1, y1, x2, y2 in sample.detections.xyxy.astype(int):
        inside[y1:y2 + 1, x1:x2 + 1] = True
    assert composed[..., 2][inside].mean() > 3 * composed[..., 2][~inside].mean()


def test_where_the_shifted_reference_has_no_pixels_nothing_differs():
    sample = part(good=True)
    frame = shifted(sample.image, 12.0, 0.0)
    composed = compose(frame, align(frame, sample.reference).reference)
    assert composed[:, :10, 2].max() == 0  # the strip the reference moved away from


def test_the_input_contract_travels_in_model_metadata():
    contract = InputContract.with_reference(Motion.EUCLIDEAN)
    assert InputContract.from_metadata(json.loads(json.dumps(contract.to_metadata()))) == contract
    assert contract.channels == CHANNELS
    assert InputContract.from_metadata(None) == InputContract.plain()
    assert not InputContract.from_metadata({"reference": False}).reference
    with pytest.raises(ModelError, match="channels"):
        InputContract.from_metadata({"reference": True, "channels": ["a", "b", "c"]})
    with pytest.raises(ModelError, match="motion"):
        InputContract.from_metadata({"reference": True, "channels": list(CHANNELS), "motion": "warp"})


def test_a_reference_model_refuses_a_frame_without_its_reference_and_a_plain_one_ignores_it(
        untrained_reference_model, untrained_model):
    from inspection.detect.detector import Detector

    sample = part()
    reference_model = Detector(untrained_reference_model, providers=["cpu"], conf=0.0001)
    assert reference_model.needs_reference
    with pytest.raises(ModelError, match="reference"):
        reference_model.predict([sample.image])
    judged = reference_model.predict([sample.image], references=[sample.reference])[0]
    composed, _ = reference_model.reference_input(sample.image, sample.reference)
    assert same(judged, reference_model.predict_inputs([composed])[0])
    plain = Detector(untrained_model, providers=["cpu"], conf=0.0001)
    assert not plain.needs_reference
    assert same(plain.predict([sample.image], references=[sample.reference])[0], plain.predict([sample.image])[0])


# -- references in data -------------------------------------------------------------------


def test_a_synthetic_part_comes_with_its_defect_free_reference():
    sample = part(seed=5)
    assert sample.reference is not None and sample.reference.shape == sample.image.shape
    changed = cv2.absdiff(sample.image, sample.reference).max(axis=2) > 40
    outside = np.ones(changed.shape, bool)
    for x1, y1, x2, y2 in sample.detections.xyxy.astype(int):
        outside[max(y1 - 2, 0):y2 + 3, max(x1 - 2, 0):x2 + 3] = False
    assert changed[outside].mean() < 0.001  # only sensor noise differs away from the defects
    # Asking for the reference changes nothing in the frame itself.
    again = make_sample(sample_seed(7, 5), width=320, height=320, surface="pcb")
    assert np.array_equal(again.image, sample.image)


def test_synth_writes_references_beside_images_where_training_finds_them(tmp_path):
    write_dataset(tmp_path / "d", n=5, seed=1, width=96, height=96, references=True)
    images = sorted((tmp_path / "d" / "images").rglob("*.jpg"))
    assert images and all(reference_path_for(i) == tmp_path / "d" / "references" / i.parent.name / i.name
                          for i in images)


def test_deeppcb_style_templates_are_found_too(tmp_path):
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "templates" / "val").mkdir(parents=True)
    image = tmp_path / "images" / "val" / "0001.jpg"
    image.write_bytes(b"x")
    assert reference_path_for(image) is None
    (tmp_path / "templates" / "val" / "0001.png").write_bytes(b"x")
    assert reference_path_for(image) == tmp_path / "templates" / "val" / "0001.png"


def test_a_dataset_version_stores_each_images_reference(tmp_path, qc_home):
    from inspection.data.versions import import_dataset, materialise

    write_dataset(tmp_path / "d", n=6, seed=2, width=96, height=96, references=True)
    version = import_dataset(tmp_path / "d", format="yolo", name="parts")
    assert version.has_references
    # The golden parts under references/ are stored with their frames, not read as frames
    # without labels (make demo printed "480 problems (480 files left out)" for them).
    assert version.problems == [] and len(version.entries) == 6
    for entry in version.entries:
        stored = version.path / entry["reference"]
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == entry["reference_sha256"]
    assert [i.reference for i in version.images()] == [version.path / e["reference"] for e in version.entries]
    assert version.verify() == []
    # The references are part of what training sees, so of the content hash.
    shutil.rmtree(tmp_path / "d" / "references")
    plain = import_dataset(tmp_path / "d", format="yolo", name="parts")
    assert not plain.has_references and plain.content_hash != version.content_hash
    data_yaml = materialise(version, tmp_path / "work")
    linked = sorted((tmp_path / "work" / "images").rglob("*.jpg"))
    assert linked and all(reference_path_for(i) is not None for i in linked)
    assert data_yaml.is_file()


def test_an_import_with_a_references_folder_names_an_image_without_one(tmp_path, qc_home):
    from inspection.data.versions import import_dataset

    write_dataset(tmp_path / "d", n=4, seed=3, width=96, height=96, references=True)
    golden = tmp_path / "golden"
    golden.mkdir()
    for path in (tmp_path / "d" / "references").rglob("*.jpg"):
        shutil.copy2(path, golden / path.name)
    shutil.rmtree(tmp_path / "d" / "references")
    assert import_dataset(tmp_path / "d", format="yolo", name="a", references=golden).has_references
    next(golden.iterdir()).unlink()
    with pytest.raises(DatasetError, match="no reference named"):
        import_dataset(tmp_path / "d", format="yolo", name="b", references=golden)


# -- recipes ------------------------------------------------------------------------------


def test_a_reference_recipe_keeps_the_planes_alike():
    from training.recipe import Recipe

    plain = {"geometry": {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.2},
             "augment": [{"name": "GaussNoise", "p": 0.2, "std_range": [0.02, 0.05]}]}
    recipe = Recipe.checked({**plain, "reference": True}, source="test")
    assert recipe.reference is not None and recipe.reference.shift > 0
    with pytest.raises(ConfigError, match="hsv_s"):
        Recipe.checked({**plain, "geometry": {"hsv_s": 0.3}, "reference": True}, source="test")
    with pytest.raises(ConfigError, match="ImageCompression"):
        Recipe.checked({**plain, "augment": [{"name": "ImageCompression", "p": 0.2}], "reference": True},
                       source="test")


def test_a_plain_recipe_keeps_the_hash_it_had_before_references_and_good_only():
    from training.recipe import Recipe

    recipe = Recipe.checked({"data": "d.yaml"}, source="test")
    dump = recipe.model_dump(mode="json")
    for added_later in ("reference", "nbs", "good_only"):
        assert dump.pop(added_later) is None
    assert recipe.hash == hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()
    assert "reference" not in recipe.to_yaml()


def test_training_composites_are_made_as_the_service_makes_them(tmp_path, qc_home):
    from training.data import prepare
    from training.reference_data import compose_data

    write_dataset(tmp_path / "d", n=10, seed=4, width=128, height=128, references=True, image_format="png")
    data = prepare(tmp_path / "d" / "data.yaml", workdir=tmp_path / "work", references=True)
    plain = prepare(tmp_path / "d" / "data.yaml", workdir=tmp_path / "work-plain")
    assert data.content_hash != plain.content_hash  # the references count
    composed = compose_data(data, workdir=tmp_path / "composed", shift=3.0, degrees=0.5, seed=0)
    val = sorted((tmp_path / "composed" / "images" / "val").glob("*.png"))
    train = sorted((tmp_path / "composed" / "images" / "train").glob("*.png"))
    assert val and train and composed.yaml_path.is_file()
    for path in val:  # val as the line sees it: aligned, no misregistration
        source = tmp_path / "d" / "images" / "val" / path.name
        frame, golden = cv2.imread(str(source)), cv2.imread(str(reference_path_for(source)))
        assert np.array_equal(cv2.imread(str(path)), compose(frame, align(frame, golden).reference))
        assert (tmp_path / "composed" / "labels" / "val" / (path.stem + ".txt")).is_file()
    source = tmp_path / "d" / "images" / "train" / train[0].name
    frame, golden = cv2.imread(str(source)), cv2.imread(str(reference_path_for(source)))
    assert not np.array_equal(cv2.imread(str(train[0])), compose(frame, align(frame, golden).reference))


def test_data_without_references_is_refused_for_a_reference_recipe(tmp_path, qc_home):
    from training.data import prepare

    write_dataset(tmp_path / "d", n=3, seed=4, width=96, height=96)
    with pytest.raises(DatasetError, match="no reference image"):
        prepare(tmp_path / "d" / "data.yaml", workdir=tmp_path / "work", references=True)


# -- the verdict --------------------------------------------------------------------------


def test_a_frame_that_does_not_align_is_reviewed_never_passed():
    rules = StationRules()
    nothing = Detections.empty(names={0: "short"}, image_wh=(64, 64))
    assert decide(nothing, rules, alignment=0.95).verdict is Verdict.PASS
    poor = decide(nothing, rules, alignment=0.31)
    assert poor.verdict is Verdict.REVIEW and poor.rule.startswith(CANNOT_ALIGN_RULE) and "0.31" in poor.rule
    strict = StationRules.model_validate({"min_alignment": 0.97})
    assert decide(nothing, strict, alignment=0.95).verdict is Verdict.REVIEW


def test_frames_of_one_part_share_its_design_and_light_and_differ_in_defects():
    first = make_sample(sample_seed(1, 0), width=320, height=320, part=9, reference=True, defects=(2, 4))
    second = make_sample(sample_seed(1, 1), width=320, height=320, part=9, reference=True, defects=(2, 4))
    other_part = make_sample(sample_seed(1, 0), width=320, height=320, part=10, reference=True, defects=(2, 4))
    assert first.surface == second.surface
    assert np.abs(first.reference.astype(int) - second.reference.astype(int)).mean() < 4  # noise only
    assert np.abs(first.reference.astype(int) - other_part.reference.astype(int)).mean() > 10
    assert not np.array_equal(first.detections.xyxy, second.detections.xyxy)
    # One golden part judges every frame of its product.
    assert align(second.image, first.reference).score > 0.9


def test_a_label_studio_task_may_name_its_reference(tmp_path):
    from inspection.data.formats import labelstudio

    (tmp_path / "media").mkdir()
    sample = part()
    cv2.imwrite(str(tmp_path / "media" / "frame.png"), sample.image)
    cv2.imwrite(str(tmp_path / "media" / "golden.png"), sample.reference)
    box = {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 320,
           "original_height": 320, "value": {"x": 10, "y": 10, "width": 5, "height": 5, "rotation": 0,
                                             "rectanglelabels": ["scratch"]}}
    tasks = [{"id": 1, "data": {"image": "frame.png", "reference": "golden.png"},
              "annotations": [{"id": 1, "result": [box]}]},
             {"id": 2, "data": {"image": "frame.png", "reference": "missing.png"},
              "annotations": [{"id": 2, "result": [box]}]}]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    read = list(labelstudio.read(tmp_path / "export.json", images=tmp_path / "media", names=["scratch"]))
    assert read[0].reference == tmp_path / "media" / "golden.png"
    assert read[1].kind == "missing_image" and "missing.png" in read[1].message
