#!/bin/bash
# The fault tests (every kill, freeze and stream test of the runtime) N times in a row
# (default 20) while a busy loop loads one of the cores; stops at the first failure, whose
# log is left in /tmp/fault-tests-RUN.log. Results go to docs/benchmarks.md by hand.
# Run from the project root: bash bench/fault_tests_under_load.sh [N]
set -u
RUNS=${1:-20}
TESTS="tests/runtime/test_local.py::test_a_worker_busy_for_longer_than_the_detection_time_is_not_declared_dead
tests/runtime/test_local.py::test_a_unit_that_kills_every_worker_stops_the_run_naming_device_and_frame
tests/runtime/test_local.py::test_a_worker_killed_mid_run_loses_no_frame
tests/runtime/test_local.py::test_a_worker_killed_while_large_tensors_cross_loses_no_frame
tests/runtime/test_local.py::test_a_silent_worker_is_detected_within_the_bound_and_replaced
tests/runtime/test_ray.py::test_an_actor_killed_mid_run_loses_no_frame
tests/runtime/test_ray.py::test_two_actors_lost_at_once_lose_no_frame
tests/runtime/test_ray.py::test_a_frozen_actor_is_found_within_the_detection_time_and_replaced
tests/runtime/test_stealing.py::test_a_ray_taker_killed_mid_run_loses_no_tile
tests/runtime/test_stealing.py::test_a_taker_killed_mid_run_loses_no_tile
tests/runtime/test_stream.py::test_a_frame_done_elsewhere_while_a_worker_waits_on_it_ends_the_wait
tests/runtime/test_stream.py::test_leaving_a_stream_early_stops_its_workers
tests/runtime/test_stream.py::test_a_bad_frame_midway_is_named_and_stops_the_workers
tests/runtime/test_stream.py::test_after_a_re_plan_only_the_units_not_held_are_computed
tests/runtime/test_soak.py"
python3 -c "while True: pass" &
LOAD=$!
trap 'kill $LOAD' EXIT
for run in $(seq 1 "$RUNS"); do
  start=$(date +%s)
  .venv/bin/python -m pytest -q -p no:cacheprovider $TESTS > "/tmp/fault-tests-$run.log" 2>&1
  status=$?
  echo "run $run: $(tail -1 "/tmp/fault-tests-$run.log") ($(( $(date +%s) - start )) s)"
  [ "$status" -ne 0 ] && exit 1
done
echo "$RUNS runs in a row passed"
