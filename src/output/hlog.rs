//! `latency.hlog`: the HdrHistogram interval log a run streams, one line per stage tag and
//! interval.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use super::{OutputError, io_err};

/// `latency.hlog`: an HdrHistogram interval log (V2 deflate-compressed histograms, base64), as
/// HdrHistogram's own tools read it, written with the hdrhistogram crate's log writer.
pub(super) struct Hlog<W: Write> {
    out: W,
    serializer: V2DeflateSerializer,
    path: PathBuf,
}

impl<W: Write> Hlog<W> {
    /// Write the header: what the values are, the format version, the start and base times
    /// (`now`: the run's time origin; interval timestamps are seconds since it) and the column
    /// legend.
    pub(super) fn begin(
        mut out: W,
        path: PathBuf,
        scenario: &str,
        endpoint: &str,
        now: SystemTime,
    ) -> Result<Self, OutputError> {
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "[fleetstorm {} scenario {scenario} against {endpoint}]",
                env!("CARGO_PKG_VERSION")
            ))
            .add_comment("[Values are microseconds; tag <stage> = latency from intended start, <stage>.service = service time]")
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(now)
            .with_base_time(now)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(io_err(&path))?;
        let legend =
            r#""StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram""#;
        writeln!(out, "{legend}").map_err(io_err(&path))?;
        Ok(Hlog {
            out,
            serializer,
            path,
        })
    }

    /// One interval of one tag; an empty histogram writes nothing.
    pub(super) fn write(
        &mut self,
        tag: &str,
        h: &hdrhistogram::Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> Result<(), OutputError> {
        if h.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let bad_tag = || std::io::Error::other(format!("{tag:?} is not a valid interval log tag"));
        let tag = Tag::new(tag).ok_or_else(bad_tag).map_err(io_err(path))?;
        // Without headers set, the builder writes nothing: it only lends the writer for a line.
        IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(io_err(path))?
            .write_histogram(h, start, length, Some(tag))
            .map_err(|e| OutputError::new(path, std::io::Error::other(e.to_string())))
    }

    pub(super) fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn the_interval_log_reads_back_with_hdrhistograms_reader() {
        let mut hlog = Hlog::begin(
            Vec::new(),
            "latency.hlog".into(),
            "s",
            "127.0.0.1:1",
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
        let text = String::from_utf8(hlog.out).unwrap();
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
}
