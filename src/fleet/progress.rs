//! The progress line `--progress` prints on stderr once a second (without the dashboard): the
//! display of what the results files record, kept apart from the writer that records it.

use crate::device::Stage;
use crate::metrics::Percentiles;
use crate::output::Interval;

/// One second of the run as a line: rates and counts, register_thing's p99 latency, CPU.
pub(super) fn line(i: &Interval<'_>) -> String {
    let reg = Percentiles::of(
        &i.stages.stages[crate::metrics::stage_index(Stage::RegisterThing)].latency,
    );
    format!(
        "[{:>5.0}s] offered {:>4}/s started {:>4} provisioned {:>4} failed {:>3} in flight {:>5} dropped {:>5} | register_thing p99 {:.1} ms | cpu {:.0} %",
        i.elapsed.as_secs_f64(),
        i.offered,
        i.started,
        i.completed,
        i.failed,
        i.in_flight,
        i.dropped_total,
        reg.p99_ms,
        i.cpu_percent
    )
}
