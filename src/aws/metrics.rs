//! `fleetstorm aws metrics RUN_DIR` (and `run --cloudwatch`): AWS's own view of a run. Reads the
//! `AWS/IoT` metrics of [`cloudwatch::METRICS`] for the run's window, per minute, with
//! CloudWatch's GetMetricData (paced and retried like cleanup: [`Pacer`]), writes
//! `RUN_DIR/cloudwatch.csv` and the run's `report.html` again, whose CloudWatch panel sets them
//! beside what the devices recorded.
//!
//! CloudWatch has a minute's datapoints a few minutes after it ends; minutes that recent when
//! read are written as not `settled`, and the command says when to read again. `--dry-run`
//! prints the queries (as the equivalent `aws cloudwatch get-metric-data` command) and sends
//! nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension as CwDimension, Metric, MetricDataQuery, MetricStat, ScanBy,
};

use super::pace::{Api, Backoff, Pacer};
use super::{AwsError, Connection, ErrorClass};
use crate::results::Summary;
use crate::results::cloudwatch::{self, CloudWatchRow, Dimension, METRICS};

/// How long after a minute ends CloudWatch is taken to have its datapoints (AWS IoT sends its
/// metrics every minute; how late they can land is UNCONFIRMED: five minutes is taken).
pub const SETTLE: Duration = Duration::from_secs(5 * 60);

/// The `Protocol` dimension's value for the devices' connections (UNCONFIRMED: `MQTT`).
pub const PROTOCOL: &str = "MQTT";

#[derive(Debug, Clone)]
pub struct MetricsOptions {
    pub conn: Connection,
    pub run_dir: PathBuf,
    /// `TemplateName` for `RegisterThingFailed` (default: the run's `devices.template`).
    pub template: Option<String>,
    /// `ClaimCertificateId` for `ApproximateNumberOfThingsRegistered` (default: the ID of the
    /// run's claim certificate, when its file can be read).
    pub claim_certificate_id: Option<String>,
    pub dry_run: bool,
}

/// The run's window: whole minutes from the one it started in to the one it ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The first minute's start (Unix seconds, a multiple of 60).
    pub start: u64,
    pub minutes: u64,
    /// How far into its first minute the run started (seconds).
    pub offset_s: u64,
}

impl Window {
    /// The window of a run that started at `started` (Unix seconds) and lasted `duration_s`.
    pub fn of(started: f64, duration_s: f64) -> Window {
        let start = (started.max(0.0) as u64) / 60 * 60;
        let end = (started + duration_s.max(0.0)).ceil() as u64;
        let minutes = end.saturating_sub(start).div_ceil(60).max(1);
        Window {
            start,
            minutes,
            offset_s: (started.max(0.0) as u64) - start,
        }
    }

    pub fn end(&self) -> u64 {
        self.start + self.minutes * 60
    }

    /// The minutes not settled at `now` (Unix seconds): their end plus [`SETTLE`] is still ahead.
    pub fn unsettled_from(&self, now: u64) -> Option<u64> {
        (0..self.minutes).find(|m| self.start + (m + 1) * 60 + SETTLE.as_secs() > now)
    }
}

/// RFC 3339 (UTC, seconds) of Unix seconds.
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// One query: a metric of [`METRICS`] with its dimension's value (`None`: not read).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub metric: cloudwatch::Metric,
    pub dimension: Option<(&'static str, String)>,
}

impl Query {
    /// The query ID: lower case, `_` (GetMetricData IDs start with a lower-case letter).
    pub fn id(&self) -> &'static str {
        self.metric.column
    }
}

/// The queries for `template` and `claim` (a metric whose dimension has no value is left out,
/// and listed in the second half).
pub fn queries(template: Option<&str>, claim: Option<&str>) -> (Vec<Query>, Vec<&'static str>) {
    let mut out = Vec::new();
    let mut left_out = Vec::new();
    for m in METRICS {
        let value = match m.dimension {
            Dimension::None => None,
            Dimension::Protocol => Some(PROTOCOL.to_string()),
            Dimension::TemplateName => template.map(str::to_string),
            Dimension::ClaimCertificateId => claim.map(str::to_string),
        };
        match (m.dimension.name(), value) {
            (None, _) => out.push(Query {
                metric: m,
                dimension: None,
            }),
            (Some(name), Some(v)) => out.push(Query {
                metric: m,
                dimension: Some((name, v)),
            }),
            (Some(_), None) => left_out.push(m.column),
        }
    }
    (out, left_out)
}

/// The queries as the `--metric-data-queries` JSON of `aws cloudwatch get-metric-data`.
pub fn queries_json(queries: &[Query]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = queries
        .iter()
        .map(|q| {
            let dimensions: Vec<serde_json::Value> = q
                .dimension
                .iter()
                .map(|(n, v)| serde_json::json!({"Name": n, "Value": v}))
                .collect();
            serde_json::json!({
                "Id": q.id(),
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/IoT", "MetricName": q.metric.name, "Dimensions": dimensions},
                    "Period": 60,
                    "Stat": q.metric.stat,
                },
                "ReturnData": true,
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

/// What `aws metrics` did.
#[derive(Debug, Clone)]
pub struct MetricsReport {
    pub lines: Vec<String>,
    /// `cloudwatch.csv` (none for a dry run).
    pub csv: Option<PathBuf>,
}

/// The run's summary, and its `devices.template` and claim certificate path from `scenario.toml`.
fn read_run(dir: &Path) -> Result<(Summary, Option<String>, Option<PathBuf>), AwsError> {
    let summary = crate::results::RunResults::read(dir)
        .map_err(|e| AwsError::Input(e.to_string()))?
        .summary;
    let scenario = std::fs::read_to_string(dir.join("scenario.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok());
    let get = |table: &str, key: &str| {
        scenario
            .as_ref()
            .and_then(|s| s.get(table)?.get(key)?.as_str().map(str::to_string))
    };
    Ok((
        summary,
        get("devices", "template"),
        get("target", "claim_cert").map(PathBuf::from),
    ))
}

/// The claim certificate's ID (SHA-256 of its DER, as AWS IoT names certificates), when its
/// file can be read (as given, or relative to the run folder).
fn claim_id(dir: &Path, path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path)
        .or_else(|_| std::fs::read_to_string(dir.join(path)))
        .ok()?;
    let der = pem::parse(text).ok()?;
    Some(crate::pki::certificate_id(der.contents()))
}

/// `fleetstorm aws metrics`.
pub async fn metrics(opts: &MetricsOptions) -> Result<MetricsReport, AwsError> {
    let dir = &opts.run_dir;
    let (summary, template, claim_cert) = read_run(dir)?;
    let started = humantime::parse_rfc3339(&summary.started_at).map_err(|e| {
        AwsError::Input(format!(
            "{}: started_at {:?}: {e}",
            dir.join("summary.json").display(),
            summary.started_at
        ))
    })?;
    let started = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let window = Window::of(started, summary.duration_s);
    let template = opts.template.clone().or(template);
    let claim = opts
        .claim_certificate_id
        .clone()
        .or_else(|| claim_cert.and_then(|p| claim_id(dir, &p)));
    let (queries, left_out) = queries(template.as_deref(), claim.as_deref());
    let mut lines = vec![format!(
        "window: {} to {} ({} minutes, per minute), namespace AWS/IoT",
        rfc3339(window.start),
        rfc3339(window.end()),
        window.minutes
    )];
    for column in &left_out {
        lines.push(format!(
            "{column}: not read (its dimension is unknown: pass {})",
            if column.starts_with("register") {
                "--template NAME"
            } else {
                "--claim-certificate-id ID"
            }
        ));
    }
    if opts.dry_run {
        lines.push(format!(
            "would run: aws cloudwatch get-metric-data --start-time {} --end-time {} --scan-by TimestampAscending{} --metric-data-queries '{}'",
            rfc3339(window.start),
            rfc3339(window.end()),
            opts.conn.cli_flags(),
            queries_json(&queries)
        ));
        lines.push("dry run: nothing sent".into());
        return Ok(MetricsReport { lines, csv: None });
    }
    let config = opts.conn.load().await?;
    let client = Client::new(&config);
    let pacer = Pacer::new(1.0, None, Backoff::default());
    let values = fetch(&client, &pacer, &queries, &window).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let unsettled = window.unsettled_from(now);
    let rows: Vec<CloudWatchRow> = (0..window.minutes)
        .map(|m| {
            let at = window.start + m * 60;
            CloudWatchRow {
                minute: rfc3339(at),
                elapsed_min: m,
                values: METRICS
                    .iter()
                    .map(|metric| {
                        queries
                            .iter()
                            .position(|q| q.metric == *metric)
                            .and_then(|i| values[i].iter().find(|(t, _)| *t == at).map(|(_, v)| *v))
                    })
                    .collect(),
                settled: unsettled.is_none_or(|first| m < first),
            }
        })
        .collect();
    let csv = dir.join(cloudwatch::FILE_NAME);
    write_csv(&csv, &rows)?;
    let datapoints: usize = values.iter().map(Vec::len).sum();
    if datapoints == 0 {
        lines.push(format!(
            "CloudWatch has no AWS/IoT datapoints for this window in Region {}: a run against the mock (which publishes none), another Region or account, or metrics not yet published",
            config.region().map_or("?".into(), |r| r.to_string())
        ));
    } else {
        lines.push(format!(
            "{datapoints} datapoints of {} metrics",
            queries.len()
        ));
    }
    if let Some(first) = unsettled {
        lines.push(format!(
            "the last {} minute(s) (from {}) may not be in CloudWatch yet: run `fleetstorm aws metrics {}` again after {}",
            window.minutes - first,
            rfc3339(window.start + first * 60),
            dir.display(),
            rfc3339(window.end() + SETTLE.as_secs())
        ));
    }
    lines.push(format!("wrote {}", csv.display()));
    match crate::report::write_run_report(dir, None) {
        Ok(path) => lines.push(format!("report: {}", path.display())),
        Err(e) => lines.push(format!("report not written: {e}")),
    }
    Ok(MetricsReport {
        lines,
        csv: Some(csv),
    })
}

/// Every query's datapoints, (minute start in Unix seconds, value), following NextToken.
async fn fetch(
    client: &Client,
    pacer: &Pacer,
    queries: &[Query],
    window: &Window,
) -> Result<Vec<Vec<(u64, f64)>>, AwsError> {
    let built: Vec<MetricDataQuery> = queries.iter().map(build).collect();
    let mut values = vec![Vec::new(); queries.len()];
    let mut token: Option<String> = None;
    loop {
        let request = || {
            client
                .get_metric_data()
                .start_time(DateTime::from_secs(window.start as i64))
                .end_time(DateTime::from_secs(window.end() as i64))
                .scan_by(ScanBy::TimestampAscending)
                .set_metric_data_queries(Some(built.clone()))
                .set_next_token(token.clone())
                .send()
        };
        let out = pacer
            .call(Api::GetMetricData, &[], request)
            .await
            .map_err(|e| {
                let hint = if e.class == ErrorClass::SetUp {
                    ": the credentials need cloudwatch:GetMetricData in the run's Region"
                } else {
                    ""
                };
                AwsError::Runtime(format!("fleetstorm aws metrics: {e}{hint}"))
            })?
            .ok_or_else(|| AwsError::Runtime("GetMetricData: not found".into()))?;
        for result in out.metric_data_results() {
            let Some(i) = queries.iter().position(|q| Some(q.id()) == result.id()) else {
                continue;
            };
            for (t, v) in result.timestamps().iter().zip(result.values()) {
                values[i].push((t.secs().max(0) as u64 / 60 * 60, *v));
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(values);
        }
    }
}

fn build(q: &Query) -> MetricDataQuery {
    let mut metric = Metric::builder()
        .namespace("AWS/IoT")
        .metric_name(q.metric.name);
    if let Some((name, value)) = &q.dimension {
        metric = metric.dimensions(CwDimension::builder().name(*name).value(value).build());
    }
    let stat = MetricStat::builder()
        .metric(metric.build())
        .period(60)
        .stat(q.metric.stat)
        .build();
    MetricDataQuery::builder()
        .id(q.id())
        .metric_stat(stat)
        .return_data(true)
        .build()
}

fn write_csv(path: &Path, rows: &[CloudWatchRow]) -> Result<(), AwsError> {
    let mut w = csv::Writer::from_path(path)
        .map_err(|e| AwsError::Runtime(format!("{}: {e}", path.display())))?;
    let fail = |e: csv::Error| AwsError::Runtime(format!("{}: {e}", path.display()));
    w.write_record(CloudWatchRow::header()).map_err(fail)?;
    for r in rows {
        w.write_record(r.cells()).map_err(fail)?;
    }
    w.flush().map_err(|e| AwsError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_the_whole_minutes_the_run_touched() {
        // 00:00:30 for 95 s: ends 00:02:05, so minutes 00:00, 00:01, 00:02.
        let w = Window::of(30.0, 95.0);
        assert_eq!((w.start, w.minutes, w.offset_s, w.end()), (0, 3, 30, 180));
        // A run ending exactly on a minute does not take the next one.
        assert_eq!(Window::of(60.0, 60.0).minutes, 1);
        // Settled: a minute's end plus five minutes has passed.
        assert_eq!(w.unsettled_from(180 + 300), None);
        // Minute 1 ends at 120 s: settled from 420 s on, minute 2 not yet.
        assert_eq!(w.unsettled_from(120 + 300), Some(2));
        assert_eq!(w.unsettled_from(120 + 299), Some(1));
        assert_eq!(w.unsettled_from(0), Some(0));
    }

    #[test]
    fn a_metric_without_its_dimension_is_left_out_and_named() {
        let (all, none) = queries(Some("tpl"), Some("abc"));
        assert_eq!((all.len(), none.len()), (METRICS.len(), 0));
        let (some, left) = queries(None, None);
        assert_eq!(
            left,
            [
                "register_thing_calls",
                "register_thing_failed",
                "things_registered"
            ]
        );
        assert_eq!(some.len(), METRICS.len() - 3);
        let json = queries_json(&all);
        let register = &json[10]["MetricStat"];
        assert_eq!(register["Metric"]["MetricName"], "RegisterThingFailed");
        assert_eq!(register["Metric"]["Dimensions"][0]["Name"], "TemplateName");
        assert_eq!(register["Metric"]["Dimensions"][0]["Value"], "tpl");
        assert_eq!(
            (register["Period"].as_u64(), register["Stat"].as_str()),
            (Some(60), Some("SampleCount"))
        );
        assert_eq!(json[0]["Id"], "connect_success");
    }
}
