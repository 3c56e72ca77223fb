//! `latency.hlog` read line by line with the hdrhistogram crate's parser, keeping each interval's
//! time: `report` and `compare` merge the intervals per tag, `merge` adds them interval by
//! interval across shards, aligned by wall-clock time. Reading a line at a time is what lets an
//! error name the line (the crate's iterator gives an offset only for lines it cannot parse, not
//! for a histogram that does not decode).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use super::ResultsError;

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
}
