//! `latency.hlog` merged: per tag, the folders' interval histograms added interval by
//! interval, aligned by wall clock.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use super::MergeError;
use super::inputs::Input;
use crate::output::OutputError;
use crate::results::{ResultsError, Summary, TimedLog};

/// The length of a run's intervals (`timeseries.csv` rows, `latency.hlog` lines).
pub(super) const INTERVAL_S: f64 = 1.0;

/// The merged interval an instant (seconds after the merged origin) starting an interval
/// belongs to: the nearest whole interval.
pub(super) fn bucket_of(start_s: f64) -> i64 {
    (start_s / INTERVAL_S).round() as i64
}

/// One merged interval: where its parts started and ended (seconds after the merged origin)
/// and, per tag, their histograms added.
#[derive(Debug, Default)]
pub(super) struct Bucket {
    pub start_s: f64,
    pub end_s: f64,
    pub tags: BTreeMap<String, Histogram<u64>>,
}

pub(super) type Buckets = BTreeMap<i64, Bucket>;

fn seconds_since(origin: SystemTime, t: Duration) -> f64 {
    let origin = origin
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    t.as_secs_f64() - origin
}

/// Every folder's intervals added into the merged ones.
pub(super) fn merge(inputs: &[Input], origin: SystemTime) -> Result<Buckets, MergeError> {
    let mut buckets = Buckets::new();
    for input in inputs {
        let path = input.dir().join("latency.hlog");
        add(&mut buckets, &input.log, input.offset_s, &path, origin)?;
    }
    Ok(buckets)
}

/// Add one log's intervals (from `path`) into `buckets`; a log without time headers counts its
/// timestamps from `offset_s` (its folder's start, after the merged origin).
fn add(
    buckets: &mut Buckets,
    log: &TimedLog,
    offset_s: f64,
    path: &Path,
    origin: SystemTime,
) -> Result<(), MergeError> {
    let log_origin = log.origin().map_or(offset_s, |t| seconds_since(origin, t));
    for i in &log.intervals {
        let start = log_origin + i.start.as_secs_f64();
        let end = start + i.length.as_secs_f64();
        let bucket = buckets.entry(bucket_of(start)).or_insert_with(|| Bucket {
            start_s: start,
            end_s: end,
            tags: BTreeMap::new(),
        });
        bucket.start_s = bucket.start_s.min(start);
        bucket.end_s = bucket.end_s.max(end);
        let h = bucket
            .tags
            .entry(i.tag.clone())
            .or_insert_with(crate::metrics::histogram);
        h.add(&i.histogram).map_err(|e| ResultsError::Hlog {
            path: path.to_path_buf(),
            detail: format!("line {}: tag {}: cannot be added: {e:?}", i.line, i.tag),
        })?;
    }
    Ok(())
}

/// Per tag, every merged interval added: what the summary's stage figures come from.
pub(super) fn totals(buckets: &Buckets) -> BTreeMap<String, Histogram<u64>> {
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for bucket in buckets.values() {
        for (tag, h) in &bucket.tags {
            let total = totals
                .entry(tag.clone())
                .or_insert_with(crate::metrics::histogram);
            // Auto-resizing: adding cannot fail.
            let _ = total.add(h);
        }
    }
    totals
}

/// The merged log, written as a run writes its own (V2 deflate histograms, base64), with
/// `StartTime` = `BaseTime` = the merged origin.
pub(super) fn write(
    path: &Path,
    summary: &Summary,
    origin: SystemTime,
    buckets: &Buckets,
) -> Result<(), MergeError> {
    let io = |e: std::io::Error| OutputError::new(path, e);
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "[fleetstorm {} merge of {} folders of scenario {}]",
            env!("CARGO_PKG_VERSION"),
            summary.merged_from.len(),
            summary.scenario
        ))
        .add_comment("[Values are microseconds; tag <stage> = latency from intended start, <stage>.service = service time]")
        .add_comment("[Histogram log format version 1.3]")
        .with_start_time(origin)
        .with_base_time(origin)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(io)?;
    out.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    // Without headers set, the builder writes nothing: it only lends the writer for the lines.
    let mut writer = IntervalLogWriterBuilder::new()
        .begin_log_with(&mut out, &mut serializer)
        .map_err(io)?;
    for bucket in buckets.values() {
        let start = Duration::from_secs_f64(bucket.start_s.max(0.0));
        let length = Duration::from_secs_f64((bucket.end_s - bucket.start_s).max(0.0));
        for (tag, h) in &bucket.tags {
            let bad_tag = || std::io::Error::other(format!("{tag:?} is not an interval log tag"));
            let tag = Tag::new(tag).ok_or_else(bad_tag).map_err(io)?;
            writer
                .write_histogram(h, start, length, Some(tag))
                .map_err(|e| io(std::io::Error::other(format!("{e:?}"))))?;
        }
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{TimedInterval, TimedLog};

    fn interval(tag: &str, start_s: u64, values: &[u64]) -> TimedInterval {
        let mut histogram = crate::metrics::histogram();
        for v in values {
            histogram.record(*v).unwrap();
        }
        TimedInterval {
            tag: tag.into(),
            start: Duration::from_secs(start_s),
            length: Duration::from_secs(1),
            histogram,
            line: 1,
        }
    }

    #[test]
    fn intervals_are_added_by_wall_clock_and_the_merged_log_reads_back() {
        let origin = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let since = |s: u64| Duration::from_secs(1_700_000_000 + s);
        let log = |base: Duration, intervals| TimedLog {
            start_time: Some(base),
            base_time: Some(base),
            intervals,
        };
        // The second log starts 2 s later, its BaseTime 5 ms before the second.
        let a = log(
            since(0),
            vec![interval("total", 0, &[10]), interval("total", 2, &[20])],
        );
        let b = log(
            since(2) - Duration::from_millis(5),
            vec![
                interval("total", 0, &[30, 40]),
                interval("total.service", 1, &[5]),
            ],
        );
        let mut buckets = Buckets::new();
        let path = Path::new("latency.hlog");
        add(&mut buckets, &a, 0.0, path, origin).unwrap();
        add(&mut buckets, &b, 2.0, path, origin).unwrap();
        assert_eq!(buckets.keys().copied().collect::<Vec<_>>(), [0, 2, 3]);
        assert_eq!(buckets[&2].tags["total"].len(), 3);
        assert!((buckets[&2].start_s - 1.995).abs() < 1e-6);
        assert_eq!(totals(&buckets)["total"].len(), 4);

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("latency.hlog");
        let summary: Summary = serde_json::from_str(
            r#"{"scenario": "s", "devices": {}, "throughput": {}, "success_rate": 0, "stages": {}}"#,
        )
        .unwrap();
        write(&out, &summary, origin, &buckets).unwrap();
        let back = crate::results::read_hlog(&out).unwrap();
        assert_eq!(back.origin(), Some(since(0)));
        let read: Vec<(String, Duration, u64)> = back
            .intervals
            .iter()
            .map(|i| (i.tag.clone(), i.start, i.histogram.len()))
            .collect();
        assert_eq!(
            read,
            [
                ("total".into(), Duration::ZERO, 1),
                ("total".into(), Duration::from_millis(1995), 3),
                ("total.service".into(), Duration::from_millis(2995), 1),
            ]
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.contains("\n\"StartTimestamp\",\"Interval_Length\""),
            "{text}"
        );
    }
}
