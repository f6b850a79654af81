"""Station rules, as a specification: which detections count, and which verdict they give.

Each test states one rule of `inspection.rules` in its name. Detections are made by hand, so
these run without a model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspection.detections import Detections
from inspection.errors import ConfigError
from inspection.rules import StationRules, Verdict, decide

NAMES = {0: "scratch", 1: "particle", 2: "dent"}
IDS = {name: i for i, name in NAMES.items()}


def boxes(*found: tuple[str, float, tuple[float, float, float, float]]) -> Detections:
    """Detections from (class name, confidence, (x1, y1, x2, y2)) in a 1000 x 1000 frame."""
    if not found:
        return Detections.empty(names=NAMES, image_wh=(1000, 1000))
    return Detections(
        xyxy=np.array([b for _, _, b in found], np.float32),
        confidence=np.array([c for _, c, _ in found], np.float32),
        class_id=np.array([IDS[n] for n, _, _ in found]),
        names=NAMES,
        image_wh=(1000, 1000),
    )


def rules(**values) -> StationRules:
    return StationRules.parse(values)


BOX = (100, 100, 140, 140)  # 40 x 40 = 1600 px2, centre (120, 120)


# -- the fail / review band ----------------------------------------------------------------


def test_a_frame_without_detections_passes():
    decision = decide(boxes(), rules())
    assert decision.verdict is Verdict.PASS
    assert len(decision.kept) == 0
    assert "no defect" in decision.rule


def test_a_box_at_or_above_fail_conf_fails_the_part_and_the_rule_names_class_and_threshold():
    decision = decide(boxes(("scratch", 0.8, BOX)), rules(default={"fail_conf": 0.5, "review_conf": 0.3}))
    assert decision.verdict is Verdict.FAIL
    assert "scratch" in decision.rule and "0.5" in decision.rule


def test_fail_conf_itself_is_inside_the_fail_range():
    decision = decide(boxes(("scratch", 0.5, BOX)), rules(default={"fail_conf": 0.5, "review_conf": 0.3}))
    assert decision.verdict is Verdict.FAIL


def test_a_box_in_the_review_band_sends_the_frame_to_review():
    decision = decide(boxes(("dent", 0.4, BOX)), rules(default={"fail_conf": 0.5, "review_conf": 0.3}))
    assert decision.verdict is Verdict.REVIEW
    assert "dent" in decision.rule and "review band" in decision.rule


def test_review_conf_itself_is_inside_the_review_band():
    decision = decide(boxes(("dent", 0.3, BOX)), rules(default={"fail_conf": 0.5, "review_conf": 0.3}))
    assert decision.verdict is Verdict.REVIEW


def test_a_box_below_review_conf_does_not_count_and_is_not_kept():
    decision = decide(boxes(("dent", 0.29, BOX)), rules(default={"fail_conf": 0.5, "review_conf": 0.3}))
    assert decision.verdict is Verdict.PASS
    assert len(decision.kept) == 0


def test_a_confident_defect_fails_the_part_even_when_another_box_is_uncertain():
    found = boxes(("dent", 0.35, BOX), ("scratch", 0.9, (500, 500, 540, 540)))
    assert decide(found, rules()).verdict is Verdict.FAIL


def test_the_review_rule_names_the_most_confident_uncertain_box():
    found = boxes(("dent", 0.3, BOX), ("particle", 0.45, (500, 500, 540, 540)))
    decision = decide(found, rules(default={"fail_conf": 0.5, "review_conf": 0.25}))
    assert decision.verdict is Verdict.REVIEW
    assert decision.rule.startswith("particle")


# -- per-class overrides -------------------------------------------------------------------


def test_a_class_override_replaces_the_default_thresholds_for_that_class_only():
    station = rules(default={"fail_conf": 0.6, "review_conf": 0.3},
                    classes={"scratch": {"fail_conf": 0.35, "review_conf": 0.2}})
    assert decide(boxes(("scratch", 0.4, BOX)), station).verdict is Verdict.FAIL  # stricter for scratches
    assert decide(boxes(("dent", 0.4, BOX)), station).verdict is Verdict.REVIEW  # default for the rest
    assert decide(boxes(("scratch", 0.25, BOX)), station).verdict is Verdict.REVIEW  # its own review band
    assert decide(boxes(("dent", 0.25, BOX)), station).verdict is Verdict.PASS


def test_the_detector_is_asked_for_boxes_down_to_the_lowest_review_threshold_of_any_class():
    station = rules(default={"fail_conf": 0.6, "review_conf": 0.3},
                    classes={"scratch": {"review_conf": 0.1, "fail_conf": 0.5}})
    assert station.lowest_conf == pytest.approx(0.1)
    assert rules().lowest_conf == pytest.approx(0.25)


# -- size ----------------------------------------------------------------------------------


def test_boxes_smaller_than_min_area_in_square_pixels_are_ignored():
    station = rules(default={"min_area": 1000})
    small = boxes(("scratch", 0.9, (0, 0, 30, 30)))  # 900 px2
    large = boxes(("scratch", 0.9, (0, 0, 40, 40)))  # 1600 px2
    assert decide(small, station).verdict is Verdict.PASS
    assert decide(large, station).verdict is Verdict.FAIL


def test_a_box_of_exactly_min_area_counts():
    assert decide(boxes(("scratch", 0.9, (0, 0, 25, 40))), rules(default={"min_area": 1000})).verdict is Verdict.FAIL


def test_min_area_in_square_millimetres_uses_the_camera_calibration():
    # 10 px per mm: a 20 x 20 px box is 2 x 2 mm = 4 mm2.
    station = rules(area_unit="mm2", px_per_mm=10, classes={"scratch": {"min_area": 5}, "dent": {"min_area": 3}})
    assert decide(boxes(("scratch", 0.9, (0, 0, 20, 20))), station).verdict is Verdict.PASS
    decision = decide(boxes(("dent", 0.9, (0, 0, 20, 20))), station)
    assert decision.verdict is Verdict.FAIL
    assert decision.areas.tolist() == pytest.approx([4.0])  # reported in the station's unit


def test_areas_are_reported_in_square_pixels_by_default():
    decision = decide(boxes(("dent", 0.9, (0, 0, 20, 30))), rules())
    assert decision.areas.tolist() == pytest.approx([600.0])


# -- regions -------------------------------------------------------------------------------

SQUARE = [[0, 0], [200, 0], [200, 200], [0, 200]]
FAR_SQUARE = [[800, 800], [1000, 800], [1000, 1000], [800, 1000]]


def test_only_boxes_whose_centre_lies_in_a_roi_polygon_count():
    station = rules(roi=[SQUARE])
    assert decide(boxes(("scratch", 0.9, BOX)), station).verdict is Verdict.FAIL
    assert decide(boxes(("scratch", 0.9, (500, 500, 540, 540))), station).verdict is Verdict.PASS


def test_a_box_is_judged_by_its_centre_even_when_it_overlaps_the_roi_edge():
    station = rules(roi=[SQUARE])
    mostly_outside = (190, 190, 600, 600)  # overlaps the ROI, centre (395, 395) outside
    mostly_inside = (100, 100, 290, 290)  # sticks out, centre (195, 195) inside
    assert decide(boxes(("scratch", 0.9, mostly_outside)), station).verdict is Verdict.PASS
    assert decide(boxes(("scratch", 0.9, mostly_inside)), station).verdict is Verdict.FAIL


def test_a_centre_on_the_roi_border_counts_as_inside():
    station = rules(roi=[SQUARE])
    assert decide(boxes(("scratch", 0.9, (180, 90, 220, 110))), station).verdict is Verdict.FAIL  # centre (200, 100)


def test_a_box_in_any_of_several_roi_polygons_counts():
    station = rules(roi=[SQUARE, FAR_SQUARE])
    assert decide(boxes(("scratch", 0.9, (880, 880, 920, 920))), station).verdict is Verdict.FAIL
    assert decide(boxes(("scratch", 0.9, (480, 480, 520, 520))), station).verdict is Verdict.PASS


def test_without_roi_the_whole_frame_counts():
    assert decide(boxes(("scratch", 0.9, (950, 950, 990, 990))), rules()).verdict is Verdict.FAIL


def test_boxes_centred_in_an_ignore_polygon_never_count_even_inside_the_roi():
    fixture = [[100, 100], [150, 100], [150, 150], [100, 150]]
    station = rules(roi=[SQUARE], ignore=[fixture])
    decision = decide(boxes(("scratch", 0.99, BOX)), station)  # centre (120, 120) is on the fixture
    assert decision.verdict is Verdict.PASS
    assert len(decision.kept) == 0
    assert decide(boxes(("scratch", 0.99, (20, 20, 40, 40))), station).verdict is Verdict.FAIL


def test_non_rectangular_polygons_are_honoured():
    triangle = [[0, 0], [400, 0], [0, 400]]
    station = rules(roi=[triangle])
    assert decide(boxes(("scratch", 0.9, (90, 90, 110, 110))), station).verdict is Verdict.FAIL  # (100, 100)
    assert decide(boxes(("scratch", 0.9, (290, 290, 310, 310))), station).verdict is Verdict.PASS  # (300, 300)


# -- max_count -----------------------------------------------------------------------------


def particles(n: int, conf: float = 0.9) -> list:
    return [("particle", conf, (100 * i, 0, 100 * i + 20, 20)) for i in range(n)]


def test_up_to_max_count_confident_boxes_of_a_class_are_tolerated():
    station = rules(classes={"particle": {"max_count": 2}})
    decision = decide(boxes(*particles(2)), station)
    assert decision.verdict is Verdict.PASS
    assert "max_count" in decision.rule
    assert len(decision.kept) == 2  # still recorded


def test_one_confident_box_more_than_max_count_fails_and_the_rule_says_how_many():
    decision = decide(boxes(*particles(3)), rules(classes={"particle": {"max_count": 2}}))
    assert decision.verdict is Verdict.FAIL
    assert "particle: 3" in decision.rule and "2 tolerated" in decision.rule


def test_max_count_is_counted_per_class():
    station = rules(classes={"particle": {"max_count": 2}})
    found = boxes(*particles(2), ("scratch", 0.9, (500, 500, 520, 520)))
    decision = decide(found, station)
    assert decision.verdict is Verdict.FAIL
    assert decision.rule.startswith("scratch")


def test_uncertain_boxes_do_not_use_up_max_count_but_still_ask_for_review():
    station = rules(classes={"particle": {"max_count": 1}})
    found = boxes(*particles(1), ("particle", 0.3, (700, 700, 720, 720)))
    assert decide(found, station).verdict is Verdict.REVIEW


def test_boxes_dropped_by_region_or_size_do_not_count_toward_max_count():
    station = rules(roi=[[[0, 0], [150, 0], [150, 50], [0, 50]]], classes={"particle": {"max_count": 2}})
    assert decide(boxes(*particles(5)), station).verdict is Verdict.PASS  # 2 of the 5 centres in the ROI
    station = rules(classes={"particle": {"max_count": 2, "min_area": 500}})
    found = boxes(*particles(2), ("particle", 0.9, (900, 900, 910, 910)))  # 100 px2: too small
    assert decide(found, station).verdict is Verdict.PASS


# -- invalid rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"default": {"fail_conf": 0.3, "review_conf": 0.6}}, "review_conf 0.6 is above fail_conf 0.3"),
        ({"classes": {"scratch": {"fail_conf": 0.3, "review_conf": 0.6}}}, "classes.scratch"),
        ({"area_unit": "mm2"}, "px_per_mm"),
        ({"area_unit": "inch2"}, "area_unit"),
        ({"px_per_mm": 0}, "px_per_mm"),
        ({"roi": [[[0, 0], [10, 10]]]}, "at least 3 points"),
        ({"ignore": [[[0, 0]]]}, "at least 3 points"),
        ({"default": {"fail_confidence": 0.5}}, "default.fail_confidence"),
        ({"thresholds": {}}, "thresholds"),
        ({"default": {"fail_conf": 1.5}}, "default.fail_conf"),
        ({"default": {"fail_conf": 0}}, "default.fail_conf"),
        ({"default": {"min_area": -1}}, "default.min_area"),
        ({"default": {"max_count": -1}}, "default.max_count"),
        ({"default": {"max_count": 1.5}}, "default.max_count"),
        ({"enabled": "sometimes"}, "enabled"),
    ],
)
def test_invalid_rules_are_refused_with_a_config_error_naming_the_problem(values, problem):
    with pytest.raises(ConfigError) as raised:
        StationRules.parse(values, source="line1-cam2.yaml")
    message = str(raised.value)
    assert message.startswith("line1-cam2.yaml: invalid rules")
    assert problem in message


@pytest.mark.parametrize(
    "values",
    [
        {"default": {"min_area": math.inf}},
        {"default": {"fail_conf": math.nan}},
        {"px_per_mm": math.inf, "area_unit": "mm2"},
        {"roi": [[[0, 0], [math.inf, 0], [0, 10]]]},
        {"ignore": [[[0, 0], [math.nan, 0], [0, 10]]]},
    ],
)
def test_infinite_or_nan_numbers_are_refused(values):
    # JSON has no infinity, so such rules could not be stored (PostgreSQL refuses them) nor
    # returned by the API; 1e999 in a JSON body parses to infinity in Python.
    with pytest.raises(ConfigError):
        StationRules.parse(values)


def test_several_problems_are_all_named():
    with pytest.raises(ConfigError) as raised:
        StationRules.parse({"default": {"fail_conf": 2, "min_area": -1}})
    assert "default.fail_conf" in str(raised.value) and "default.min_area" in str(raised.value)


def test_text_that_is_not_yaml_gives_a_config_error_naming_the_source():
    with pytest.raises(ConfigError, match=r"^station.yaml: not valid YAML"):
        StationRules.parse("default: {fail_conf: [0.5", source="station.yaml")


def test_yaml_that_is_not_a_mapping_gives_a_config_error():
    with pytest.raises(ConfigError, match="invalid rules"):
        StationRules.parse("- just\n- a list\n")


# -- YAML ----------------------------------------------------------------------------------

EXAMPLE = """
enabled: true
area_unit: mm2          # px2 (default) or mm2, with px_per_mm
px_per_mm: 48           # calibration of this camera
default: {fail_conf: 0.5, review_conf: 0.25}
classes:
  scratch:  {fail_conf: 0.4, min_area: 0.5}
  particle: {fail_conf: 0.6, max_count: 2}
roi: [[[0, 0], [2448, 0], [2448, 1900], [0, 1900]]]
ignore: [[[100, 100], [300, 100], [300, 200], [100, 200]]]
"""


def test_the_documented_yaml_example_parses_into_these_rules():
    parsed = StationRules.parse(EXAMPLE)
    assert parsed.enabled and parsed.area_unit == "mm2" and parsed.px_per_mm == 48
    assert parsed.for_class("scratch").fail_conf == 0.4 and parsed.for_class("scratch").min_area == 0.5
    assert parsed.for_class("scratch").review_conf == 0.25  # unset fields take the class defaults
    assert parsed.for_class("particle").max_count == 2
    assert parsed.for_class("dent") == parsed.default
    assert parsed.roi == [[(0, 0), (2448, 0), (2448, 1900), (0, 1900)]]
    assert len(parsed.ignore) == 1


def test_an_empty_yaml_file_gives_the_default_rules():
    assert StationRules.parse("") == StationRules()
    assert StationRules.parse(None) == StationRules()
    assert StationRules.parse("# only a comment\n") == StationRules()


def test_a_station_can_be_disabled_in_its_rules():
    assert StationRules.parse("enabled: false").enabled is False


def test_rules_survive_a_round_trip_through_json_as_stored_by_the_record_store():
    parsed = StationRules.parse(EXAMPLE)
    assert StationRules.parse(parsed.model_dump(mode="json")) == parsed
    assert StationRules.model_validate_json(parsed.model_dump_json()) == parsed
