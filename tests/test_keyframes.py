import numpy as np
import pytest

from render.keyframes import ClipTooShort, choose_windows, clip_seed, short_clip_keyframes


def one_window(start, end, seed):
    (frames, sub, _), = choose_windows(start, end, 30, 3, [np.random.default_rng(seed)], selection="random")
    return frames, sub


@pytest.mark.parametrize("start, end", [(0, 80), (1, 383), (0, 29), (5, 40), (0, 1000)])
def test_long_clips_give_T_integer_keyframes_at_most_3_apart(start, end):
    for seed in range(50):
        kf, sub = one_window(start, end, seed)
        gaps = np.diff(kf)
        assert not sub and len(kf) == 30
        assert np.all(kf == np.round(kf)) and kf[0] >= start and kf[-1] <= end
        assert gaps.min() >= 1 and gaps.max() <= 3


def test_choice_is_seeded_and_varies_with_the_seed():
    a = one_window(0, 200, 7)[0]
    b = one_window(0, 200, 7)[0]
    c = one_window(0, 200, 8)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert clip_seed(0, "fox", 0) == clip_seed(0, "fox", 0) != clip_seed(0, "fox", 1)


def test_short_clip_gets_evenly_spaced_subframes_over_its_whole_range():
    kf, sub = one_window(0, 17, 0)  # 18 frames, like Jump
    assert sub and len(kf) == 30 and kf[0] == 0 and kf[-1] == 17
    assert np.allclose(np.diff(kf), 17 / 29)


def test_short_clip_rejected_under_reject_policy_and_below_minimum():
    with pytest.raises(ClipTooShort, match="policy: reject"):
        short_clip_keyframes(0, 17, 30, short_clip="reject")
    with pytest.raises(ClipTooShort, match="min_source_frames"):
        short_clip_keyframes(1, 5, 30, min_source_frames=8)


def test_motion_places_the_window_where_the_vertices_move_and_random_keeps_the_papers_choice():
    motion = np.r_[np.zeros(140), np.ones(59)]  # 200 frames: idle for 140, then moving
    idle_under_random = 0
    for seed in range(20):
        paper, _ = one_window(1, 200, seed)  # "random": the paper's choice
        (moving, _, info), = choose_windows(1, 200, 30, 3, [np.random.default_rng(seed)], selection="motion",
                                            motion=motion)
        assert np.array_equal(np.diff(moving), np.diff(paper))  # the same span and spacing, another offset
        assert moving[-1] > 141 and info["motion_score"] > 0
        idle_under_random += paper[-1] <= 141
    assert idle_under_random > 0  # a random window can miss all of the motion


def test_several_windows_do_not_overlap_and_stop_when_the_animation_is_full():
    rngs = [np.random.default_rng(s) for s in range(3)]
    windows = choose_windows(1, 600, 30, 3, rngs, selection="motion", motion=np.random.default_rng(9).random(599))
    assert len(windows) == 3
    spans = sorted((w[0][0], w[0][-1]) for w in windows)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    assert all(len(w[0]) == 30 and (np.diff(w[0]) <= 3).all() for w in windows)
    short = choose_windows(1, 40, 30, 3, [np.random.default_rng(s) for s in range(3)], selection="random")
    assert len(short) == 1  # 40 frames hold one window of 30 keyframes, not three
