"""When a socket process moves connections: over the fleet's mean by more than the
tolerance, or over it while another is under it by more than the tolerance; down to the
mean, a quarter of its connections per heartbeat at most."""

from service.socket.rebalance import excess


def test_a_process_within_the_tolerance_keeps_its_connections(settings):
    settings.GROUPCAST_REBALANCE_TOLERANCE = 0.2
    assert excess(120, [120, 100, 80]) == 0  # mean 100: 120 is within 20 %
    assert excess(100, [100, 100]) == 0
    assert excess(0, [0, 0]) == 0 and excess(10, []) == 0


def test_a_process_over_it_moves_down_to_the_mean_a_quarter_at_a_time(settings):
    settings.GROUPCAST_REBALANCE_TOLERANCE = 0.2
    assert excess(300, [300, 0, 0]) == 75  # mean 100, but a quarter of 300 per heartbeat
    assert excess(130, [130, 100, 70]) == 30  # down to the mean: within the quarter
    assert excess(13, [13, 7]) == 3  # mean 10: 3 over
    assert excess(3, [3, 0, 0, 0, 0]) == 1  # always at least one when over


def test_a_process_over_the_mean_fills_a_starved_one_even_within_the_tolerance(settings):
    settings.GROUPCAST_REBALANCE_TOLERANCE = 0.2
    # the fleet e2e settled in: nobody over 120, but one pod far below the mean
    assert excess(120, [120, 107, 73]) == 20
    assert excess(107, [120, 107, 73]) == 7
    assert excess(73, [120, 107, 73]) == 0  # the starved one keeps what it has
    assert excess(101, [101, 100, 99]) == 0  # nobody starved: no churn
    assert excess(100, [100, 100, 60]) == 13  # mean 86.7: both full pods give their share
