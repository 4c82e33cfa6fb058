"""The sequencing rules of the nodes, as plain classes without ROS: which Action steps an
environment (StepGate), when policy_controller decides (DecisionGate), and how reward_publisher
pairs frames with the dreamer's outcomes (StampJoin, Seen)."""

from __future__ import annotations

import numpy as np

from roboscape_r_ros.runtime.gates.controller import NO_OBSERVATION_WARN_S, DecisionGate, Ready
from roboscape_r_ros.runtime.gates.stamp_join import Seen, StampJoin
from roboscape_r_ros.runtime.gates.step_gate import StepGate


# -- StepGate --------------------------------------------------------------------------------------
def gate_at_episode(episode: str = "ep1", stamp: int = 100) -> StepGate:
    gate = StepGate()
    gate.new_episode(episode)
    gate.published(stamp)
    return gate


def test_step_gate_steps_once_per_frame_and_ignores_repeated_answers():
    gate = gate_at_episode()
    assert gate.admit(100, "ep1", ended=False).verdict == "step"
    gate.moved_on()
    gate.published(200)
    assert gate.admit(100, "ep1", ended=False).verdict == "ignore"  # the policy's repeat of an old answer
    assert gate.admit(200, "", ended=False).verdict == "step"  # no id: any episode


def test_step_gate_republished_frames_under_fresh_stamps_step_once():
    gate = gate_at_episode(stamp=100)
    gate.published(101)  # the dreamer re-sends the frame under a fresh stamp
    assert gate.admit(101, "ep1", ended=False).verdict == "step"
    gate.moved_on()
    assert gate.admit(100, "ep1", ended=False).verdict == "ignore"


def test_step_gate_refuses_after_the_end_but_ignores_answers_to_the_final_frame():
    gate = gate_at_episode()
    assert gate.admit(100, "ep1", ended=True).verdict == "ignore"
    refused = gate.admit(555, "ep1", ended=True)
    assert (refused.verdict, refused.reason) == ("refuse", "ended") and "ep1 has ended" in refused.message


def test_step_gate_the_previous_episode_id_on_the_current_frame_is_expected_other_ids_are_refused():
    gate = gate_at_episode("ep1", 100)
    gate.new_episode("ep2")
    gate.published(200)
    assert gate.admit(100, "ep1", ended=False).verdict == "ignore"  # the old episode's last frame
    assert gate.admit(200, "ep1", ended=False).verdict == "ignore"  # the new frame overtook the latched id
    refused = gate.admit(200, "ep7", ended=False)
    assert (refused.verdict, refused.reason) == ("refuse", "episode") and "'ep7'" in refused.message
    assert gate.admit(300, "ep1", ended=False).verdict == "refuse"  # the old id on a frame never sent


# -- DecisionGate ----------------------------------------------------------------------------------
S = 1_000_000_000  # ns per s


def decide(gate: DecisionGate, stamp: int, now: float, **take) -> Ready | str | None:
    assert gate.arrival(stamp, clock_s=stamp / S, now=now).kind == "fresh"
    gate.accept(stamp, ("header", "image"), now)
    ready = gate.take(estop=False, paused=False, goal_missing=False, **take)
    if isinstance(ready, Ready):
        gate.decided(stamp)
    return ready


def test_decision_gate_stale_fresh_and_repeated_observations():
    gate = DecisionGate(stale_after_s=0.5, state_tolerance_s=0.02, needs_state=False)
    stale = gate.arrival(1 * S, clock_s=2.0, now=0.0)
    assert stale.kind == "stale" and abs(stale.age_s - 1.0) < 1e-9 and not stale.clock_mismatch
    assert gate.arrival(0, clock_s=7200.0, now=0.0).clock_mismatch  # a zero stamp against wall time
    assert gate.arrival(3 * S, clock_s=2.0, now=0.0).kind == "fresh"  # ahead of the clock is not stale
    ready = decide(gate, 2 * S, now=1.0)
    assert isinstance(ready, Ready) and ready.pending.payload == ("header", "image") and gate.step == 1
    assert gate.arrival(2 * S, clock_s=2.0, now=1.1).kind == "repeat"
    assert gate.take(estop=False, paused=False, goal_missing=False) is None  # decided once


def test_decision_gate_waits_for_the_state_stamped_like_the_frame_and_gives_up_after_the_timeout():
    gate = DecisionGate(stale_after_s=0.5, state_tolerance_s=0.02, needs_state=True)
    gate.state_received(1 * S, np.zeros(3))
    assert decide(gate, 2 * S, now=0.0) is None  # the state is a second older: wait
    gate.state_received(2 * S + 10_000_000, np.ones(3))  # 10 ms off: within tolerance
    ready = gate.take(estop=False, paused=False, goal_missing=False)
    assert isinstance(ready, Ready) and ready.state.tolist() == [1, 1, 1]
    gate.decided(ready.pending.stamp)
    assert decide(gate, 3 * S, now=1.0) is None
    assert not gate.tick(1.2).dropped_waiting
    assert gate.tick(1.6).dropped_waiting and gate.pending is None


def test_decision_gate_e_stop_keeps_the_frame_an_update_drops_it_a_missing_goal_drops_it_once():
    gate = DecisionGate(stale_after_s=0.5, state_tolerance_s=0.02, needs_state=False)
    gate.accept(1 * S, "frame", 0.0)
    assert gate.take(estop=True, paused=False, goal_missing=False) is None and gate.pending is not None
    assert gate.take(estop=False, paused=True, goal_missing=False) is None and gate.pending is None
    gate.accept(2 * S, "frame", 0.1)
    assert gate.take(estop=False, paused=False, goal_missing=True) == "no-goal" and gate.pending is None


def test_decision_gate_watchdog_holds_once_and_a_held_frame_is_decided_afresh():
    gate = DecisionGate(stale_after_s=0.5, state_tolerance_s=0.02, needs_state=False)
    assert isinstance(decide(gate, 1 * S, now=0.0), Ready)
    assert not gate.tick(0.4).hold
    tick = gate.tick(0.6)
    assert tick.hold and tick.silence_s > 0.5
    assert gate.hold() and not gate.hold()  # the hold goes out once
    assert not gate.tick(0.9).hold
    # The simulator waited through the hold and re-sends the frame answered last: decided again.
    assert gate.arrival(1 * S, clock_s=1.0, now=1.0).kind == "fresh"
    assert gate.accept(1 * S, "frame", 1.0)  # it ends the silence


def test_decision_gate_adopts_the_first_episode_and_resets_on_the_next():
    gate = DecisionGate(stale_after_s=0.5, state_tolerance_s=0.02, needs_state=False)
    decide(gate, 1 * S, now=0.0)
    assert gate.new_episode("ep1") == "adopted" and gate.step == 1 and gate.answered == 1 * S
    assert gate.new_episode("ep1") == "same"
    assert gate.new_episode("ep2") == "new" and gate.step == 0 and gate.answered is None
    # The new episode's first frame was answered under the old id: it is decided again.
    assert gate.arrival(1 * S, clock_s=1.0, now=0.1).kind == "fresh"


# -- StampJoin, Seen -------------------------------------------------------------------------------
def test_stamp_join_pairs_in_either_order_once_and_forgets_the_oldest():
    join: StampJoin[str, str] = StampJoin(limit=2)
    assert join.left(1, "frame1") is None and join.right(1, "done1") == "frame1"
    assert join.right(2, "done2") is None and join.left(2, "frame2") == "done2"
    assert join.right(1, "again") is None  # paired already: it waits for a new partner
    for stamp in (10, 11, 12):
        join.left(stamp, f"frame{stamp}")
    assert join.right(10, "late") is None and join.right(12, "done12") == "frame12"  # 10 was forgotten


def test_seen_answers_first_time_within_its_memory():
    seen = Seen(limit=2)
    assert seen.first(("ep", 1)) and not seen.first(("ep", 1))
    seen.first(("ep", 2))
    seen.first(("ep", 3))
    assert seen.first(("ep", 1))  # forgotten beyond the limit


def test_decision_gate_says_once_when_no_observation_ever_came():
    gate = DecisionGate(stale_after_s=0.5, state_tolerance_s=0.02, needs_state=False)
    ticks = [gate.tick(t) for t in (100.0, 105.0, 100.0 + NO_OBSERVATION_WARN_S + 0.1, 112.0, 130.0)]
    assert [t.never_observed for t in ticks] == [False, False, True, False, False]
    heard = DecisionGate(stale_after_s=0.5, state_tolerance_s=0.02, needs_state=False)
    heard.tick(0.0)
    decide(heard, 1 * S, now=1.0)
    assert not any(heard.tick(t).never_observed for t in (5.0, 20.0, 60.0))  # silence after frames: the watchdog's
