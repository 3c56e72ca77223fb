//! `timeseries.csv` merged: rows placed by wall clock in the merged intervals, each column
//! merged by what it measures (see the module above for the rules).

use std::collections::BTreeMap;

use super::hlog::{Buckets, INTERVAL_S, bucket_of};
use super::inputs::Input;
use super::tables::Table;
use crate::metrics::Percentiles;
use crate::results::timeseries::{Measure, column};

/// How a column merges: by what it measures (the results model's [`Measure`]: a count is
/// summed, a maximum is the largest, ...), or left empty when fleetstorm does not write it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Known(Measure),
    /// Not a column fleetstorm writes: left empty.
    Unknown,
}

fn kind(name: &str) -> Kind {
    column(name).map_or(Kind::Unknown, |c| Kind::Known(c.measure))
}

/// How many decimals the run writes a column with (an unknown one is left empty).
fn decimals(name: &str) -> usize {
    column(name).map_or(0, |c| c.decimals)
}

/// One folder's rows in one merged interval: counts added, the rest from its last row there
/// (maxima kept), and the latest end.
#[derive(Debug, Clone, Default)]
struct Cell {
    end_s: f64,
    values: BTreeMap<String, f64>,
}

/// A folder's rows by merged interval, and the intervals it spans.
fn cells_of(input: &Input, columns: &[(String, Kind)]) -> BTreeMap<i64, Cell> {
    let mut cells: BTreeMap<i64, Cell> = BTreeMap::new();
    let Some(ts) = &input.run.timeseries else {
        return cells;
    };
    let elapsed = ts.elapsed();
    let values: Vec<(String, Kind, Vec<Option<f64>>)> = columns
        .iter()
        .filter_map(|(name, k)| ts.column(name).map(|v| (name.clone(), *k, v)))
        .collect();
    let mut previous = 0.0;
    for (row, end) in elapsed.iter().enumerate() {
        if !end.is_finite() {
            continue;
        }
        let start = input.offset_s + previous;
        previous = *end;
        let cell = cells.entry(bucket_of(start)).or_default();
        cell.end_s = cell.end_s.max(input.offset_s + end);
        for (name, k, column) in &values {
            let Some(v) = column[row] else {
                continue;
            };
            let previous = cell.values.get(name).copied();
            let merged = match (k, previous) {
                (Kind::Known(Measure::Count), Some(p)) => p + v,
                (Kind::Known(Measure::Max), Some(p)) => p.max(v),
                _ => v,
            };
            cell.values.insert(name.clone(), merged);
        }
    }
    cells
}

/// The merged `timeseries.csv`: one row per merged interval from the first to the last any
/// folder wrote.
pub(super) fn merge(inputs: &[Input], buckets: &Buckets) -> Table {
    let mut header: Vec<String> = Vec::new();
    for input in inputs {
        for name in input.run.timeseries.iter().flat_map(|t| t.header()) {
            if !header.contains(name) {
                header.push(name.clone());
            }
        }
    }
    let columns: Vec<(String, Kind)> = header.iter().map(|h| (h.clone(), kind(h))).collect();
    let decimals: Vec<usize> = header.iter().map(|h| decimals(h)).collect();
    let shards: Vec<BTreeMap<i64, Cell>> = inputs.iter().map(|i| cells_of(i, &columns)).collect();
    let (Some(first), Some(last)) = (
        shards.iter().filter_map(|c| c.keys().next()).min(),
        shards.iter().filter_map(|c| c.keys().next_back()).max(),
    ) else {
        return Table {
            header,
            rows: Vec::new(),
        };
    };
    // Per folder, its latest values so far (levels and totals carry over between its rows).
    let mut latest: Vec<BTreeMap<String, f64>> = vec![BTreeMap::new(); shards.len()];
    let mut rows = Vec::new();
    for b in *first..=*last {
        let mut end_s = None::<f64>;
        for (shard, cells) in shards.iter().enumerate() {
            if let Some(cell) = cells.get(&b) {
                end_s = Some(end_s.map_or(cell.end_s, |e| e.max(cell.end_s)));
                // An empty cell (no target rate after the schedule's end) is no value.
                for (name, _) in &columns {
                    match cell.values.get(name) {
                        Some(v) => latest[shard].insert(name.clone(), *v),
                        None => latest[shard].remove(name),
                    };
                }
            }
        }
        let end_s = end_s.unwrap_or((b + 1) as f64 * INTERVAL_S);
        // Which folders run in this interval (between their first and last rows).
        let running: Vec<usize> = (0..shards.len())
            .filter(|&s| {
                let c = &shards[s];
                c.keys().next().is_some_and(|f| *f <= b)
                    && c.keys().next_back().is_some_and(|l| *l >= b)
            })
            .collect();
        let row = columns
            .iter()
            .zip(&decimals)
            .map(|((name, k), decimals)| {
                let here = || {
                    shards
                        .iter()
                        .filter_map(|c| c.get(&b)?.values.get(name).copied())
                };
                let carried = |among: &[usize]| -> Vec<f64> {
                    among
                        .iter()
                        .filter_map(|&s| latest[s].get(name).copied())
                        .collect()
                };
                let value = match k {
                    Kind::Known(Measure::Elapsed) => Some(end_s),
                    Kind::Known(Measure::Count) => Some(here().sum()),
                    Kind::Known(Measure::Max) => here().reduce(f64::max),
                    Kind::Known(Measure::Level) => Some(carried(&running).iter().sum()),
                    Kind::Known(Measure::Shared) => carried(&running).into_iter().reduce(f64::max),
                    Kind::Known(Measure::Mean) => {
                        let v = carried(&running);
                        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                    }
                    Kind::Known(Measure::Cumulative) => {
                        let started: Vec<usize> = (0..shards.len()).collect();
                        Some(carried(&started).iter().sum())
                    }
                    Kind::Known(Measure::Percentile(stage, q)) => {
                        let p = buckets
                            .get(&b)
                            .and_then(|bucket| bucket.tags.get(*stage))
                            .map(Percentiles::of)
                            .unwrap_or_default();
                        Some(if *q == 0.50 { p.p50_ms } else { p.p99_ms })
                    }
                    Kind::Unknown => None,
                };
                value.map_or_else(String::new, |v| format!("{v:.*}", *decimals))
            })
            .collect();
        rows.push(row);
    }
    Table { header, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_a_run_writes_has_a_merge_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "name = \"s\"\n[devices]\ncount = 1\n[[schedule]]\nexecutor = \"burst\"\ncount = 1\n",
        )
        .unwrap();
        let scenario = crate::scenario::Scenario::load(&path, &[]).unwrap();
        let out = dir.path().join("run");
        drop(crate::output::Outputs::create(&out, &scenario, "x").unwrap());
        let ts = crate::results::Timeseries::read(&out.join("timeseries.csv")).unwrap();
        assert!(ts.header().len() > 20, "{:?}", ts.header());
        for name in ts.header() {
            assert_ne!(kind(name), Kind::Unknown, "{name}");
        }
        assert_eq!(
            kind("register_thing_p99_ms"),
            Kind::Known(Measure::Percentile("register_thing", 0.99))
        );
        assert_eq!(kind("failed_throttled"), Kind::Known(Measure::Count));
        assert_eq!(kind("a_later_column"), Kind::Unknown);
    }
}
