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
use crate::results::{ResultsError, Summary};

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
        // A log without time headers: its timestamps count from the folder's start.
        let log_origin = input
            .log
            .origin()
            .map_or(input.offset_s, |t| seconds_since(origin, t));
        let path = input.dir().join("latency.hlog");
        for i in &input.log.intervals {
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
                path: path.clone(),
                detail: format!("line {}: tag {}: cannot be added: {e:?}", i.line, i.tag),
            })?;
        }
    }
    Ok(buckets)
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
