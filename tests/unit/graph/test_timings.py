"""The result's timings: wall time from creation, active time summed over executions."""

from datetime import UTC, datetime, timedelta

from graph.ledger import CallRecord
from graph.result import RunClock, busy_ms

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


def call(start_s: float, end_s: float) -> CallRecord:
    return CallRecord(
        node="worker",
        task_id="t1",
        attempt=1,
        retry=0,
        model="m",
        prompt_tokens=1,
        completion_tokens=1,
        estimated=False,
        started_at=(T0 + timedelta(seconds=start_s)).isoformat(),
        finished_at=(T0 + timedelta(seconds=end_s)).isoformat(),
        latency_ms=(end_s - start_s) * 1000,
        error=None,
    )


def test_busy_time_counts_overlapping_calls_once_and_skips_the_gaps() -> None:
    # 0-2 and 1-3 overlap (3 s); 10-11 after a gap (1 s); 10.5-10.7 inside it.
    calls = [call(10, 11), call(0, 2), call(1, 3), call(10.5, 10.7)]
    assert busy_ms(calls) == 4000
    assert busy_ms([]) == 0


def test_a_resumed_run_counts_its_suspended_time_in_the_total_only() -> None:
    # Created at T0, first execution busy 5 s, then suspended; the resume ran 3 s and ended at T0+20.
    clock = RunClock(created_at=T0, earlier_active_ms=5000, resumes=1)
    total, active = clock.timings(3000, T0 + timedelta(seconds=20))
    assert (total, active) == (20000, 8000)


def test_without_a_creation_time_the_total_is_the_execution() -> None:
    assert RunClock().timings(1234.5, T0) == (1234.5, 1234.5)


def test_the_total_is_never_below_the_active_time() -> None:
    """``created_at`` stamped by another clock (the database's) that runs ahead of this one."""
    clock = RunClock(created_at=T0 + timedelta(seconds=2))
    assert clock.timings(3000, T0 + timedelta(seconds=4)) == (3000, 3000)
