//! `latency.hlog`, the HdrHistogram interval log: one line per stage tag and interval, V2
//! deflate-compressed histograms in base64, as HdrHistogram's own tools read it. Its one model:
//! the writer a run streams it with (and `merge` writes its merged log with), the reader that
//! keeps each interval's time (`report` and `compare` merge the intervals per tag), and the
//! wall-clock merge of several logs interval by interval (`merge`).
//!
//! Reading a line at a time is what lets an error name the line (the crate's iterator gives an
//! offset only for lines it cannot parse, not for a histogram that does not decode).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use super::ResultsError;

/// The file name inside a run folder.
pub const FILE_NAME: &str = "latency.hlog";

/// An interval log being written: the header at [`HlogWriter::begin`], then one line per
/// non-empty interval of a tag.
pub struct HlogWriter<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
}

impl<W: Write> HlogWriter<W> {
    /// Write the header: `[fleetstorm VERSION title]`, what the values are, the format version,
    /// the start and base times (`origin`: interval timestamps are seconds since it) and the
    /// column legend.
    pub fn begin(mut out: W, title: &str, origin: SystemTime) -> std::io::Result<Self> {
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(&format!("[fleetstorm {} {title}]", env!("CARGO_PKG_VERSION")))
            .add_comment("[Values are microseconds; tag <stage> = latency from intended start, <stage>.service = service time]")
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(origin)
            .with_base_time(origin)
            .begin_log_with(&mut out, &mut serializer)?;
        let legend =
            r#""StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram""#;
        writeln!(out, "{legend}")?;
        Ok(HlogWriter { out, serializer })
    }

    /// One interval of one tag, `start` after the origin; an empty histogram writes nothing.
    pub fn write(
        &mut self,
        tag: &str,
        h: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> std::io::Result<()> {
        if h.is_empty() {
            return Ok(());
        }
        let bad_tag = || std::io::Error::other(format!("{tag:?} is not a valid interval log tag"));
        let tag = Tag::new(tag).ok_or_else(bad_tag)?;
        // Without headers set, the builder writes nothing: it only lends the writer for a line.
        IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)?
            .write_histogram(h, start, length, Some(tag))
            .map_err(|e| std::io::Error::other(format!("{e:?}")))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// One tagged interval of an interval log.
#[derive(Debug, Clone)]
pub struct TimedInterval {
    pub tag: String,
    /// The interval's start timestamp as written (seconds since `BaseTime` when the log has one).
    pub start: Duration,
    pub length: Duration,
    pub histogram: Histogram<u64>,
    /// 1-based line number in the file.
    pub line: usize,
}

/// An interval log: its time headers and its non-empty tagged intervals, in file order.
#[derive(Debug, Clone, Default)]
pub struct TimedLog {
    /// `#[StartTime: …]`, seconds since the epoch.
    pub start_time: Option<Duration>,
    /// `#[BaseTime: …]`, seconds since the epoch: interval timestamps count from it.
    pub base_time: Option<Duration>,
    pub intervals: Vec<TimedInterval>,
}

impl TimedLog {
    /// What interval timestamps count from, since the epoch: `BaseTime`, else `StartTime`
    /// (how fleetstorm writes them: both are the run's start), else `None`.
    pub fn origin(&self) -> Option<Duration> {
        self.base_time.or(self.start_time)
    }
}

/// Parse an interval log. A last line cut short (no newline: a run killed mid-write) is
/// ignored; blank lines and comments are skipped; anything else that is not a log line, or a
/// histogram that does not decode, is an error naming the file and line.
pub fn parse_timed(path: &Path, bytes: &[u8]) -> Result<TimedLog, ResultsError> {
    let err = |line: usize, detail: String| ResultsError::Hlog {
        path: path.to_path_buf(),
        detail: format!("line {line}: {detail}"),
    };
    let mut log = TimedLog::default();
    let mut deserializer = Deserializer::new();
    for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        if !line.ends_with(b"\n") {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let interval = match IntervalLogIterator::new(line).next() {
            None => continue,
            Some(Ok(LogEntry::StartTime(t))) => {
                log.start_time = Some(t);
                continue;
            }
            Some(Ok(LogEntry::BaseTime(t))) => {
                log.base_time = Some(t);
                continue;
            }
            Some(Ok(LogEntry::Interval(i))) => i,
            Some(Err(_)) => return Err(err(number, "not an interval log line".into())),
        };
        let Some(tag) = interval.tag() else {
            continue;
        };
        let tag = tag.as_str();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| err(number, format!("tag {tag}: bad base64: {e}")))?;
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| err(number, format!("tag {tag}: bad histogram: {e:?}")))?;
        if histogram.is_empty() {
            continue;
        }
        log.intervals.push(TimedInterval {
            tag: tag.to_string(),
            start: interval.start_timestamp(),
            length: interval.duration(),
            histogram,
            line: number,
        });
    }
    Ok(log)
}

/// The length of a run's intervals (`timeseries.csv` rows, `latency.hlog` lines).
pub const INTERVAL_S: f64 = 1.0;

/// The merged interval an instant (seconds after the merged origin) starting an interval
/// belongs to: the nearest whole interval.
pub fn bucket_of(start_s: f64) -> i64 {
    (start_s / INTERVAL_S).round() as i64
}

/// One merged interval: where its parts started and ended (seconds after the merged origin)
/// and, per tag, their histograms added.
#[derive(Debug, Default)]
pub struct Bucket {
    pub start_s: f64,
    pub end_s: f64,
    pub tags: BTreeMap<String, Histogram<u64>>,
}

pub type Buckets = BTreeMap<i64, Bucket>;

fn seconds_since(origin: SystemTime, t: Duration) -> f64 {
    let origin = origin
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    t.as_secs_f64() - origin
}

/// Add one log's intervals (from `path`) into `buckets`; a log without time headers counts its
/// timestamps from `offset_s` (its folder's start, after the merged origin).
pub fn add(
    buckets: &mut Buckets,
    log: &TimedLog,
    offset_s: f64,
    path: &Path,
    origin: SystemTime,
) -> Result<(), ResultsError> {
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
pub fn totals(buckets: &Buckets) -> BTreeMap<String, Histogram<u64>> {
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

/// Every merged interval written, in time order, each tag's histograms one line.
pub fn write_buckets<W: Write>(w: &mut HlogWriter<W>, buckets: &Buckets) -> std::io::Result<()> {
    for bucket in buckets.values() {
        let start = Duration::from_secs_f64(bucket.start_s.max(0.0));
        let length = Duration::from_secs_f64((bucket.end_s - bucket.start_s).max(0.0));
        for (tag, h) in &bucket.tags {
            w.write(tag, h, start, length)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log as fleetstorm writes it (StartTime, BaseTime, legend) with one `total` interval
    /// of one value, then `tail`.
    fn log_with(tail: &str) -> String {
        use hdrhistogram::serialization::V2DeflateSerializer;
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        let at = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut out = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut h = crate::metrics::histogram();
        h.record(1_000).unwrap();
        let mut w = IntervalLogWriterBuilder::new()
            .with_start_time(at)
            .with_base_time(at)
            .begin_log_with(&mut out, &mut serializer)
            .unwrap();
        w.write_comment("\"StartTimestamp\",\"Interval_Length\"")
            .unwrap();
        w.write_histogram(
            &h,
            Duration::ZERO,
            Duration::from_secs(1),
            Tag::new("total"),
        )
        .unwrap();
        String::from_utf8(out).unwrap() + "\n" + tail
    }

    #[test]
    fn a_corrupt_histogram_is_named_by_line_and_a_cut_last_line_is_ignored() {
        let path = Path::new("latency.hlog");
        let text = log_with("Tag=total,1.000,1.0");
        let log = parse_timed(path, text.as_bytes()).unwrap();
        assert_eq!(log.origin(), Some(Duration::from_millis(1_700_000_000_250)));
        assert_eq!(log.intervals.len(), 1, "{text}");
        let line = log.intervals[0].line;
        assert_eq!(log.intervals[0].histogram.len(), 1);

        let lines: Vec<&str> = text.lines().collect();
        let encoded = lines[line - 1].rsplit(',').next().unwrap();
        let corrupt = text.replace(encoded, &format!("x{}", &encoded[1..])) + "\n";
        let e = parse_timed(path, corrupt.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("latency.hlog") && e.contains(&format!("line {line}:")),
            "{e}"
        );
        let garbage = text.replace("Tag=total,0.000", "oops") + "\n";
        let e = parse_timed(path, garbage.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("line {line}: not an interval log line")),
            "{e}"
        );
    }

    #[test]
    fn the_interval_log_reads_back_with_hdrhistograms_reader() {
        let mut hlog = HlogWriter::begin(
            Vec::new(),
            "scenario s against 127.0.0.1:1",
            SystemTime::now(),
        )
        .unwrap();
        let mut written = Vec::new();
        for (second, tag, values) in [
            (0, "register_thing", vec![1_000u64, 2_000, 250_000]),
            (0, "register_thing.service", vec![900]),
            (1, "register_thing", vec![3_000; 7]),
            (1, "connect_claim", vec![]),
        ] {
            let mut h = crate::metrics::histogram();
            for v in &values {
                h.record(*v).unwrap();
            }
            let start = Duration::from_secs(second);
            hlog.write(tag, &h, start, Duration::from_secs(1)).unwrap();
            if !h.is_empty() {
                written.push((tag, start, h));
            }
        }
        hlog.flush().unwrap();
        let text = String::from_utf8(hlog.into_inner()).unwrap();
        assert!(
            text.contains("#[Histogram log format version 1.3]"),
            "{text}"
        );
        assert!(text.contains("#[StartTime: "), "{text}");

        let mut deserializer = Deserializer::new();
        let mut read = Vec::new();
        for entry in IntervalLogIterator::new(text.as_bytes()) {
            let LogEntry::Interval(i) = entry.unwrap() else {
                continue;
            };
            let raw = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                i.encoded_histogram(),
            )
            .unwrap();
            let h: hdrhistogram::Histogram<u64> =
                deserializer.deserialize(&mut raw.as_slice()).unwrap();
            assert_eq!(i.duration(), Duration::from_secs(1));
            read.push((
                i.tag().unwrap().as_str().to_string(),
                i.start_timestamp(),
                h,
            ));
        }
        assert_eq!(read.len(), written.len(), "{text}");
        for ((tag, start, h), (read_tag, read_start, read_h)) in written.iter().zip(&read) {
            assert_eq!(read_tag, tag);
            assert_eq!(read_start, start);
            assert_eq!(read_h.len(), h.len(), "{tag}");
            assert_eq!(read_h.max(), h.max(), "{tag}");
            assert_eq!(read_h, h, "{tag}");
        }
    }

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
        let mut w =
            HlogWriter::begin(Vec::new(), "merge of 2 folders of scenario s", origin).unwrap();
        write_buckets(&mut w, &buckets).unwrap();
        std::fs::write(&out, w.into_inner()).unwrap();
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
