import numpy as np
import pytest

from render.keyframes import ClipTooShort, choose_keyframes, clip_seed


@pytest.mark.parametrize("start, end", [(0, 80), (1, 383), (0, 29), (5, 40), (0, 1000)])
def test_long_clips_give_T_integer_keyframes_at_most_3_apart(start, end):
    for seed in range(50):
        kf, sub = choose_keyframes(start, end, 30, 3, np.random.default_rng(seed))
        gaps = np.diff(kf)
        assert not sub and len(kf) == 30
        assert np.all(kf == np.round(kf)) and kf[0] >= start and kf[-1] <= end
        assert gaps.min() >= 1 and gaps.max() <= 3


def test_choice_is_seeded_and_varies_with_the_seed():
    a = choose_keyframes(0, 200, 30, 3, np.random.default_rng(7))[0]
    b = choose_keyframes(0, 200, 30, 3, np.random.default_rng(7))[0]
    c = choose_keyframes(0, 200, 30, 3, np.random.default_rng(8))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert clip_seed(0, "fox", 0) == clip_seed(0, "fox", 0) != clip_seed(0, "fox", 1)


def test_short_clip_gets_evenly_spaced_subframes_over_its_whole_range():
    kf, sub = choose_keyframes(0, 17, 30, 3, np.random.default_rng(0))  # 18 frames, like Jump
    assert sub and len(kf) == 30 and kf[0] == 0 and kf[-1] == 17
    assert np.allclose(np.diff(kf), 17 / 29)


def test_short_clip_rejected_under_reject_policy_and_below_minimum():
    with pytest.raises(ClipTooShort, match="policy: reject"):
        choose_keyframes(0, 17, 30, 3, np.random.default_rng(0), short_clip="reject")
    with pytest.raises(ClipTooShort, match="min_source_frames"):
        choose_keyframes(1, 5, 30, 3, np.random.default_rng(0), min_source_frames=8)
