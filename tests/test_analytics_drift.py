"""Camera and input drift: per-frame statistics, the per-frame quality check, PSI and KS, and
a diagnosis in words that tells equipment from model. Synthetic frames only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from inspection.analytics.drift import (
    CONFIDENCE,
    Cause,
    DriftSettings,
    Source,
    change_point,
    compare_windows,
    ks_2samp,
    psi,
)
from inspection.analytics.image_stats import (
    QualityProblem,
    QualitySettings,
    Statistic,
    image_stats,
    stack,
)
from inspection.data.synth.generator import make_sample, sample_seed


@pytest.fixture(scope="module")
def frames():
    """One product line: the same surface, 48 parts with their own light and defects."""
    return [make_sample(sample_seed(11, i), surface="foil", width=320, height=320).image
            for i in range(48)]


@pytest.fixture(scope="module")
def frame_stats(frames):
    return stack([image_stats(frame) for frame in frames])


class TestImageStats:
    def test_brightness_contrast_and_colour_of_a_known_frame(self):
        frame = np.zeros((100, 100, 3), np.uint8)
        frame[:, :50] = (0, 0, 200)  # left half red (BGR), right half black
        stats = image_stats(frame)
        assert stats.red == pytest.approx(100, abs=1)
        assert stats.blue == 0 and stats.green == 0
        luma = 0.299 * 200  # BT.601 luma of the red half
        assert stats.brightness == pytest.approx(luma / 2, abs=1)
        assert stats.contrast == pytest.approx(luma / 2, abs=1)

    def test_a_flat_frame_has_no_sharpness_and_edges_have_some(self):
        assert image_stats(np.full((64, 64), 90, np.uint8)).sharpness == 0
        edges = np.zeros((64, 64), np.uint8)
        edges[:, ::8] = 255
        assert image_stats(edges).sharpness > 100

    def test_sharpness_does_not_depend_on_resolution(self, frames):
        frame = frames[0]
        small = image_stats(frame).sharpness
        large = image_stats(cv2.resize(frame, (1280, 1280), interpolation=cv2.INTER_CUBIC)).sharpness
        assert large == pytest.approx(small, rel=0.15)

    def test_blur_lowers_sharpness_and_darkness_lowers_brightness(self, frames):
        frame = frames[0]
        base = image_stats(frame)
        assert image_stats(cv2.GaussianBlur(frame, (0, 0), 1.5)).sharpness < 0.6 * base.sharpness
        dark = image_stats(cv2.convertScaleAbs(frame, alpha=0.7))
        assert dark.brightness == pytest.approx(0.7 * base.brightness, rel=0.03)

    def test_columns_follow_the_statistic_enum(self, frames):
        stats = image_stats(frames[0])
        row = stack([stats])[0]
        for statistic in Statistic:
            assert row[statistic.column] == stats[statistic]

    def test_measures_any_frame_the_service_accepts_even_one_pixel(self):
        # Found by tests/test_fuzz_images.py: a valid 1x1 JPEG reached image_stats and gave a 500.
        stats = image_stats(np.full((1, 1, 3), 200, np.uint8))
        assert stats.brightness == pytest.approx(200, abs=1) and stats.sharpness == 0

    def test_refuses_what_is_not_a_frame(self):
        with pytest.raises(ValueError, match="uint8"):
            image_stats(np.zeros((10, 10, 3), np.float32))


class TestQualityCheck:
    settings = QualitySettings(min_brightness=40, max_brightness=220, min_sharpness=20)

    def test_a_good_frame_passes(self, frames):
        assert image_stats(frames[0]).sharpness > 20
        assert image_stats(frames[0]).brightness > 40
        assert check(frames[0], self.settings) is None

    def test_dark_bright_and_blurred_frames_say_why(self, frames):
        dark = check(cv2.convertScaleAbs(frames[0], alpha=0.1), self.settings)
        assert dark.problem is QualityProblem.TOO_DARK
        assert str(dark).startswith("image quality: too dark (brightness")
        bright = check(np.full((64, 64, 3), 250, np.uint8), self.settings)
        assert bright.problem is QualityProblem.TOO_BRIGHT
        blurred = check(cv2.GaussianBlur(frames[0], (0, 0), 6), self.settings)
        assert blurred.problem is QualityProblem.BLURRED
        assert "check the focus" in blurred.reason

    def test_a_dark_frame_is_reported_dark_not_blurred(self):
        # Weak edges in a frame with the light off send someone to the light, not the lens.
        issue = check(np.full((64, 64, 3), 5, np.uint8), self.settings)
        assert issue.problem is QualityProblem.TOO_DARK

    def test_thresholds_are_explicit_and_checked(self):
        with pytest.raises(ValidationError):
            QualitySettings(min_brightness=40, max_brightness=220)  # no sharpness threshold
        with pytest.raises(ValidationError, match="below"):
            QualitySettings(min_brightness=200, max_brightness=100, min_sharpness=1)


def check(frame, settings):
    from inspection.analytics.image_stats import check_quality

    return check_quality(image_stats(frame), settings)


class TestDistances:
    def test_ks_statistic_and_p_value(self):
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=400), rng.normal(0.3, size=50)
        d, p = ks_2samp(a, b)
        # D by hand: the largest gap between the two empirical CDFs.
        grid = np.sort(np.concatenate([a, b]))
        gaps = np.abs((np.searchsorted(np.sort(a), grid, "right") / 400)
                      - (np.searchsorted(np.sort(b), grid, "right") / 50))
        assert d == pytest.approx(gaps.max())
        scipy_stats = pytest.importorskip("scipy.stats")
        assert p == pytest.approx(scipy_stats.ks_2samp(a, b).pvalue, abs=0.01)

    def test_identical_windows_have_zero_psi_and_separated_ones_a_large_one(self):
        rng = np.random.default_rng(1)
        a = rng.normal(size=1000)
        assert psi(a, a, 10) == pytest.approx(0, abs=1e-12)
        assert psi(a, a + 3, 10) > 2

    def test_psi_bins_on_reference_quantiles_even_with_repeated_values(self):
        reference = np.array([0.0] * 80 + list(np.linspace(0.5, 1, 20)))
        assert psi(reference, reference, 10) == pytest.approx(0, abs=1e-12)


def _window(frame_stats, rows, scale=None):
    window = frame_stats[rows].copy()
    for statistic, factor in (scale or {}).items():
        window[:, statistic.column] *= factor
    return window


class TestDiagnosis:
    settings = DriftSettings()

    def test_a_stable_camera_reports_no_drift(self, frame_stats):
        report = compare_windows(frame_stats[:24], frame_stats[24:], DriftSettings(min_frames=20))
        assert not report.drifted and report.source is None
        assert report.summary() == "no drift"

    def test_lost_sharpness_is_named_lens_or_focus(self, frames, frame_stats):
        blurred = stack([image_stats(cv2.GaussianBlur(f, (0, 0), 1.2)) for f in frames[24:]])
        report = compare_windows(frame_stats[:24], blurred, DriftSettings(min_frames=20))
        (finding,) = report.findings
        assert finding.cause is Cause.FOCUS and finding.source is Source.EQUIPMENT
        assert finding.change < -0.4
        assert finding.message.startswith("sharpness down ") and finding.message.endswith(
            ": lens or focus")

    def test_a_darker_light_is_named_lighting_not_focus(self, frames, frame_stats):
        # 30% less light also weakens the Laplacian (by 1 - 0.7^2 = 51%): the diagnosis must
        # not blame the lens for it.
        dark = stack([image_stats(cv2.convertScaleAbs(f, alpha=0.7)) for f in frames[24:]])
        report = compare_windows(frame_stats[:24], dark, DriftSettings(min_frames=20))
        (finding,) = report.findings
        assert finding.cause is Cause.LIGHTING and report.source is Source.EQUIPMENT
        # Within what 24 different parts against 24 others allow (their own light varies).
        assert finding.change == pytest.approx(-0.3, abs=0.06)
        assert finding.message.startswith("brightness down ")
        assert finding.message.endswith("%: lighting or exposure")

    def test_since_names_when_the_change_began(self):
        rng = np.random.default_rng(3)
        base = np.array([120, 40, 300, 110, 120, 130.0])
        reference = base * rng.normal(1, 0.03, (200, 6))
        recent = base * rng.normal(1, 0.03, (100, 6))
        recent[60:, Statistic.SHARPNESS.column] *= 0.6
        start = datetime(2026, 11, 25, 14, tzinfo=UTC)
        times = [start + timedelta(minutes=i) for i in range(100)]
        report = compare_windows(reference, recent, self.settings, recent_times=times)
        (finding,) = report.findings
        assert finding.since == times[60]
        assert finding.message == "sharpness down 40% since 2026-11-25T15:00+00:00: lens or focus"

    def test_confidence_moving_alone_points_at_the_model(self):
        rng = np.random.default_rng(4)
        images = rng.normal([120, 40, 300, 110, 120, 130], 3, (300, 6))
        confidence_before = rng.beta(8, 2, 200)
        confidence_now = rng.beta(4, 4, 100)  # the parts changed; the camera did not
        report = compare_windows(images[:200], images[200:], self.settings,
                                 reference_confidence=confidence_before,
                                 recent_confidence=confidence_now)
        (finding,) = report.findings
        assert finding.cause is Cause.MODEL and report.source is Source.MODEL
        assert finding.message == ("the model's confidence moved while the images did not: "
                                   "relabel and retrain")
        assert report.statistics[CONFIDENCE].drifted

    def test_confidence_moving_with_the_images_is_blamed_on_the_equipment(self):
        rng = np.random.default_rng(5)
        images = rng.normal([120, 40, 300, 110, 120, 130], 3, (300, 6))
        images[200:] *= 0.5  # half the light: every level halves...
        images[200:, Statistic.SHARPNESS.column] *= 0.5  # ...and the Laplacian's variance quarters
        report = compare_windows(images[:200], images[200:], self.settings,
                                 reference_confidence=rng.beta(8, 2, 200),
                                 recent_confidence=rng.beta(4, 4, 100))
        assert [f.cause for f in report.findings] == [Cause.LIGHTING]
        assert report.source is Source.EQUIPMENT
        assert "fix the equipment before judging the model" in report.summary()

    def test_a_colour_cast_is_named_white_balance(self):
        rng = np.random.default_rng(6)
        images = rng.normal([120, 40, 300, 110, 120, 130], 2, (300, 6))
        images[200:, Statistic.BLUE.column] *= 0.75
        report = compare_windows(images[:200], images[200:], self.settings)
        (finding,) = report.findings
        assert finding.cause is Cause.COLOUR and finding.statistic == "blue"
        assert finding.change == pytest.approx(-0.25, abs=0.02)
        assert finding.message.startswith("blue down 2")
        assert finding.message.endswith("% against the light: white balance or the light source")

    def test_small_windows_are_refused(self, frame_stats):
        with pytest.raises(ValueError, match="min_frames"):
            compare_windows(frame_stats[:24], frame_stats[24:], self.settings)  # 24 < 30

    def test_change_point_on_a_step(self):
        recent = np.r_[np.full(30, 100.0), np.full(20, 60.0)]
        assert change_point(np.full(50, 100.0), recent) == 30


def test_a_growing_alignment_residual_names_the_fixture_not_the_model(frame_stats):
    """Frames of one product aligned to its golden image: scores around 0.95 in the reference
    window; a loosened fixture lets parts sit askew and the residual (1 - score) grows."""
    from inspection.analytics.drift import ALIGNMENT
    from inspection.detect.reference import align

    golden = make_sample(sample_seed(3, 0), width=320, height=320, part=5, reference=True).reference
    parts = [make_sample(sample_seed(3, i), width=320, height=320, part=5, defects=(1, 3)).image for i in range(80)]

    def askew(image, degrees):
        matrix = cv2.getRotationMatrix2D((160, 160), degrees, 1.0)
        return cv2.warpAffine(image, matrix, (320, 320), borderMode=cv2.BORDER_REFLECT)

    steady = np.array([align(p, golden).score for p in parts[:40]])
    loose = np.array([align(askew(p, 2.5 + (i % 3)), golden).score for i, p in enumerate(parts[40:])])
    stats = np.concatenate([frame_stats, frame_stats])[:40]
    times = [datetime(2026, 12, 1, 8, tzinfo=UTC) + timedelta(minutes=i) for i in range(40)]
    report = compare_windows(stats, stats, DriftSettings(), recent_times=times,
                             reference_alignment=steady, recent_alignment=loose)
    assert report.statistics[ALIGNMENT].change > 0.5
    (finding,) = report.findings
    assert finding.cause is Cause.FIXTURE and finding.source is Source.EQUIPMENT
    assert "alignment residual up" in finding.message and "fixture" in finding.message
    quiet = compare_windows(stats, stats, DriftSettings(), reference_alignment=steady, recent_alignment=steady[::-1])
    assert quiet.findings == []
