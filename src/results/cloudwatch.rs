//! `cloudwatch.csv`: AWS's own per-minute view of a run, the `AWS/IoT` metrics `fleetstorm aws
//! metrics` reads for the run's window. Its one model: [`METRICS`] (each column: metric, statistic,
//! dimension), the row ([`CloudWatchRow`]), the reader ([`read`]); and [`Panel`], the minutes of
//! the run side by side with what the devices recorded, with the differences named, which the
//! report draws.
//!
//! Metric names and dimensions are AWS IoT's developer guide's ("AWS IoT metrics and
//! dimensions"): the provisioning metrics are 1 for a failed call and 0 for a successful one, so
//! their `Sum` is the failures and their `SampleCount` the calls; `RegisterThingFailed` is
//! dimensioned by `TemplateName`, `ApproximateNumberOfThingsRegistered` by `ClaimCertificateId`,
//! the `Connect.*` metrics by `Protocol` (its value for MQTT over TLS, `MQTT`, is UNCONFIRMED).

use std::collections::BTreeMap;
use std::path::Path;

use super::{ResultsError, open_csv};

/// The file name inside a run folder.
pub const FILE_NAME: &str = "cloudwatch.csv";

/// The dimension a metric is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// None: the account-wide series.
    None,
    /// `Protocol` (the `Connect.*` metrics).
    Protocol,
    /// `TemplateName` (`RegisterThingFailed`).
    TemplateName,
    /// `ClaimCertificateId` (`ApproximateNumberOfThingsRegistered`).
    ClaimCertificateId,
}

impl Dimension {
    /// The CloudWatch dimension name.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Dimension::None => None,
            Dimension::Protocol => Some("Protocol"),
            Dimension::TemplateName => Some("TemplateName"),
            Dimension::ClaimCertificateId => Some("ClaimCertificateId"),
        }
    }
}

/// One column of `cloudwatch.csv`: an `AWS/IoT` metric read with one statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The column name (and the query ID, with `-` for `_`).
    pub column: &'static str,
    /// The metric name in the `AWS/IoT` namespace.
    pub name: &'static str,
    /// `Sum` or `SampleCount`.
    pub stat: &'static str,
    pub dimension: Dimension,
}

const fn metric(
    column: &'static str,
    name: &'static str,
    stat: &'static str,
    dimension: Dimension,
) -> Metric {
    Metric {
        column,
        name,
        stat,
        dimension,
    }
}

/// The metrics read, in column order.
pub const METRICS: [Metric; 13] = [
    metric(
        "connect_success",
        "Connect.Success",
        "Sum",
        Dimension::Protocol,
    ),
    metric(
        "connect_throttle",
        "Connect.Throttle",
        "Sum",
        Dimension::Protocol,
    ),
    metric(
        "connect_client_id_throttle",
        "Connect.ClientIDThrottle",
        "Sum",
        Dimension::Protocol,
    ),
    metric(
        "connect_auth_error",
        "Connect.AuthError",
        "Sum",
        Dimension::Protocol,
    ),
    metric(
        "connect_client_error",
        "Connect.ClientError",
        "Sum",
        Dimension::Protocol,
    ),
    metric(
        "connect_server_error",
        "Connect.ServerError",
        "Sum",
        Dimension::Protocol,
    ),
    metric(
        "create_keys_calls",
        "CreateKeysAndCertificateFailed",
        "SampleCount",
        Dimension::None,
    ),
    metric(
        "create_keys_failed",
        "CreateKeysAndCertificateFailed",
        "Sum",
        Dimension::None,
    ),
    metric(
        "create_csr_calls",
        "CreateCertificateFromCsrFailed",
        "SampleCount",
        Dimension::None,
    ),
    metric(
        "create_csr_failed",
        "CreateCertificateFromCsrFailed",
        "Sum",
        Dimension::None,
    ),
    metric(
        "register_thing_calls",
        "RegisterThingFailed",
        "SampleCount",
        Dimension::TemplateName,
    ),
    metric(
        "register_thing_failed",
        "RegisterThingFailed",
        "Sum",
        Dimension::TemplateName,
    ),
    metric(
        "things_registered",
        "ApproximateNumberOfThingsRegistered",
        "Sum",
        Dimension::ClaimCertificateId,
    ),
];

/// The index of `column` in [`METRICS`].
fn index(column: &str) -> usize {
    METRICS
        .iter()
        .position(|m| m.column == column)
        .expect("a column of METRICS")
}

/// One minute of the run's window, as CloudWatch had it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatchRow {
    /// The minute's start (RFC 3339, UTC).
    pub minute: String,
    /// Minutes since the window's start (the minute the run started in).
    pub elapsed_min: u64,
    /// Per [`METRICS`] column: the minute's datapoint, `None` when CloudWatch had none.
    pub values: Vec<Option<f64>>,
    /// False for a minute too recent when read for CloudWatch to have settled: read again later.
    pub settled: bool,
}

impl CloudWatchRow {
    /// The header of `cloudwatch.csv`.
    pub fn header() -> Vec<String> {
        let mut h = vec!["minute".to_string(), "elapsed_min".to_string()];
        h.extend(METRICS.iter().map(|m| m.column.to_string()));
        h.push("settled".into());
        h
    }

    /// The row's cells, in [`CloudWatchRow::header`] order.
    pub fn cells(&self) -> Vec<String> {
        let mut c = vec![self.minute.clone(), self.elapsed_min.to_string()];
        c.extend(
            self.values
                .iter()
                .map(|v| v.map(|v| format!("{v}")).unwrap_or_default()),
        );
        c.push(self.settled.to_string());
        c
    }

    /// The value of `column` (0 when CloudWatch had no datapoint).
    pub fn get(&self, column: &str) -> f64 {
        self.values
            .get(index(column))
            .copied()
            .flatten()
            .unwrap_or(0.0)
    }
}

/// Read `cloudwatch.csv`.
pub fn read(path: &Path) -> Result<Vec<CloudWatchRow>, ResultsError> {
    let invalid = |detail: String| ResultsError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    let (mut reader, header) = open_csv(path)?;
    let at = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| invalid(format!("line 1: no `{name}` column")))
    };
    let minute = at("minute")?;
    let elapsed = at("elapsed_min")?;
    let settled = at("settled")?;
    let columns = METRICS
        .iter()
        .map(|m| at(m.column))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: usize| record.get(i).unwrap_or("").trim();
        let number = |i: usize, name: &str| -> Result<Option<f64>, ResultsError> {
            match cell(i) {
                "" => Ok(None),
                text => text.parse().map(Some).map_err(|_| {
                    invalid(format!(
                        "line {line}: column `{name}`: {text:?} is not a number"
                    ))
                }),
            }
        };
        let values = columns
            .iter()
            .zip(METRICS.iter())
            .map(|(i, m)| number(*i, m.column))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(CloudWatchRow {
            minute: cell(minute).to_string(),
            elapsed_min: number(elapsed, "elapsed_min")?.unwrap_or(0.0) as u64,
            values,
            settled: cell(settled) != "false",
        });
    }
    Ok(rows)
}

/// What the devices recorded in one minute of the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceMinute {
    /// Devices provisioned (`completed`).
    pub provisioned: f64,
    /// Failed devices by class (`failed_<class>`), the classes that had any.
    pub failed: BTreeMap<String, f64>,
    pub certificates_issued: f64,
    pub connects: f64,
    /// Failures the devices saw as a RegisterThing rejection (rejected, throttled or hook
    /// denied at `register_thing`), from `failures.csv`.
    pub register_rejections: f64,
}

/// The devices' and AWS's figures of one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelRow {
    pub minute: String,
    pub elapsed_min: u64,
    pub devices: DeviceMinute,
    pub aws: CloudWatchRow,
}

/// The side-by-side panel: each minute, and the differences over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub rows: Vec<PanelRow>,
    /// The differences named, one sentence each; empty when both sides agree.
    pub differences: Vec<String>,
    /// Minutes CloudWatch had not settled when read.
    pub unsettled: usize,
}

/// What the devices recorded, per minute of the window: `offset_s` is how far into its first
/// minute the run started; `series` the timeseries' (elapsed seconds, column name, value)
/// cells; `failures` failures.csv's (elapsed seconds, reason).
pub fn device_minutes(
    offset_s: f64,
    minutes: usize,
    series: &[(f64, &str, f64)],
    failures: &[(f64, String)],
) -> Vec<DeviceMinute> {
    let mut out = vec![DeviceMinute::default(); minutes];
    // An interval's row is written at its end: it belongs to the minute its end falls in
    // (a hair before, so an interval ending on the minute stays in the minute it filled).
    let slot = |elapsed: f64| ((offset_s + elapsed - 1e-6).max(0.0) / 60.0) as usize;
    for (elapsed, name, value) in series {
        let Some(m) = out.get_mut(slot(*elapsed)) else {
            continue;
        };
        match *name {
            "completed" => m.provisioned += value,
            "certificates_issued" => m.certificates_issued += value,
            "connects" => m.connects += value,
            other => {
                if let Some(class) = other.strip_prefix("failed_")
                    && *value > 0.0
                {
                    *m.failed.entry(class.to_string()).or_default() += value;
                }
            }
        }
    }
    for (elapsed, reason) in failures {
        let seen = ["rejected", "throttled", "hook_denied"]
            .iter()
            .any(|class| reason.as_str() == format!("{class}.register_thing"));
        if seen && let Some(m) = out.get_mut(slot(*elapsed)) {
            m.register_rejections += 1.0;
        }
    }
    out
}

/// The panel of `aws`'s minutes beside `devices`' (same length, same minutes); `registered`:
/// the RegisterThing acceptances the devices received (`certificates.registered`).
pub fn panel(aws: &[CloudWatchRow], devices: &[DeviceMinute], registered: u64) -> Panel {
    let rows: Vec<PanelRow> = aws
        .iter()
        .zip(devices)
        .map(|(a, d)| PanelRow {
            minute: a.minute.clone(),
            elapsed_min: a.elapsed_min,
            devices: d.clone(),
            aws: a.clone(),
        })
        .collect();
    let total = |column: &str| aws.iter().map(|r| r.get(column)).sum::<f64>();
    let device = |f: fn(&DeviceMinute) -> f64| devices.iter().map(f).sum::<f64>();
    let totals = Totals {
        aws_register_failed: total("register_thing_failed"),
        devices_register_rejections: device(|d| d.register_rejections),
        aws_certificates: total("create_keys_calls") - total("create_keys_failed")
            + total("create_csr_calls")
            - total("create_csr_failed"),
        devices_certificates: device(|d| d.certificates_issued),
        aws_registered: total("things_registered"),
        devices_registered: registered as f64,
        aws_connect_throttled: total("connect_throttle") + total("connect_client_id_throttle"),
        aws_connects: [
            "connect_success",
            "connect_throttle",
            "connect_client_id_throttle",
            "connect_auth_error",
            "connect_client_error",
            "connect_server_error",
        ]
        .iter()
        .map(|c| total(c))
        .sum(),
        devices_connects: device(|d| d.connects),
    };
    Panel {
        rows,
        differences: differences(&totals),
        unsettled: aws.iter().filter(|r| !r.settled).count(),
    }
}

/// The window's totals the panel compares.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub aws_register_failed: f64,
    pub devices_register_rejections: f64,
    pub aws_certificates: f64,
    pub devices_certificates: f64,
    pub aws_registered: f64,
    pub devices_registered: f64,
    pub aws_connect_throttled: f64,
    pub aws_connects: f64,
    pub devices_connects: f64,
}

/// The differences between AWS's totals and the devices', named.
pub fn differences(t: &Totals) -> Vec<String> {
    let n = |x: f64| format!("{}", x.round() as i64);
    // AWS's figure and what it is called, the devices' and what it is called, and what the
    // difference is when AWS's is the larger, or the devices'.
    let gaps = [
        (
            (t.aws_register_failed, "in CloudWatch"),
            (t.devices_register_rejections, "rejections received"),
            "AWS counted {} RegisterThing failures the devices never saw",
            "the devices received {} RegisterThing rejections CloudWatch does not count",
        ),
        (
            (t.aws_certificates, "issued"),
            (t.devices_certificates, "received"),
            "AWS issued {} certificates whose response the devices never received",
            "the devices received {} certificates more than CloudWatch counts issued",
        ),
    ];
    let mut out = Vec::new();
    for ((aws, aws_is), (devices, devices_are), aws_more, devices_more) in gaps {
        let gap = aws - devices;
        let (text, first, second) = if gap >= 1.0 {
            (aws_more, (aws, aws_is), (devices, devices_are))
        } else if gap <= -1.0 {
            (devices_more, (devices, devices_are), (aws, aws_is))
        } else {
            continue;
        };
        out.push(format!(
            "{} ({} {}, {} {})",
            text.replace("{}", &n(gap.abs())),
            n(first.0),
            first.1,
            n(second.0),
            second.1
        ));
    }
    if (t.aws_registered - t.devices_registered).abs() >= 1.0 {
        out.push(format!(
            "AWS registered about {} things, the devices saw {} registrations (ApproximateNumberOfThingsRegistered is approximate)",
            n(t.aws_registered),
            n(t.devices_registered)
        ));
    }
    if t.aws_connect_throttled >= 1.0 {
        out.push(format!(
            "AWS throttled {} connects (Connect.Throttle and Connect.ClientIDThrottle)",
            n(t.aws_connect_throttled)
        ));
    }
    if (t.aws_connects - t.devices_connects).abs() >= 1.0 {
        out.push(format!(
            "AWS counted {} connects, the devices attempted {} (other clients of the account count too)",
            n(t.aws_connects),
            n(t.devices_connects)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(elapsed_min: u64, set: &[(&str, f64)], settled: bool) -> CloudWatchRow {
        let mut values = vec![None; METRICS.len()];
        for (column, v) in set {
            values[index(column)] = Some(*v);
        }
        CloudWatchRow {
            minute: format!("2026-01-01T00:0{elapsed_min}:00Z"),
            elapsed_min,
            values,
            settled,
        }
    }

    #[test]
    fn rows_read_back_as_written_with_empty_cells_as_no_datapoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let rows = vec![
            row(
                0,
                &[("connect_success", 40.0), ("register_thing_failed", 3.0)],
                true,
            ),
            row(1, &[], false),
        ];
        let mut text = CloudWatchRow::header().join(",") + "\n";
        for r in &rows {
            text += &(r.cells().join(",") + "\n");
        }
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read(&path).unwrap(), rows);
        assert_eq!(rows[1].get("connect_success"), 0.0);
        // A cell that is no number names its column and line.
        std::fs::write(&path, text.replace(",40,", ",forty,")).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("connect_success"), "{e}");
    }

    #[test]
    fn device_figures_fall_in_the_minute_their_interval_ends_in() {
        // The run started 30 s into its first minute: elapsed 29 s is minute 0, 31 s minute 1.
        let series = [
            (29.0, "completed", 2.0),
            (30.0, "completed", 1.0),
            (31.0, "completed", 5.0),
            (31.0, "failed_throttled", 4.0),
            (31.0, "failed_timeout", 0.0),
            (95.0, "connects", 7.0),
        ];
        let failures = vec![
            (40.0, "throttled.register_thing".to_string()),
            (41.0, "timeout.register_thing".to_string()),
            (42.0, "rejected.create_certificate".to_string()),
        ];
        let m = device_minutes(30.0, 3, &series, &failures);
        assert_eq!((m[0].provisioned, m[1].provisioned), (3.0, 5.0));
        assert_eq!(
            m[1].failed,
            BTreeMap::from([("throttled".to_string(), 4.0)])
        );
        assert_eq!((m[1].register_rejections, m[2].connects), (1.0, 7.0));
    }

    #[test]
    fn the_panel_names_what_aws_counted_and_the_devices_never_saw() {
        let aws = [
            row(
                0,
                &[
                    ("register_thing_calls", 50.0),
                    ("register_thing_failed", 30.0),
                    ("create_keys_calls", 60.0),
                    ("create_keys_failed", 2.0),
                    ("connect_success", 100.0),
                    ("connect_throttle", 5.0),
                    ("things_registered", 20.0),
                ],
                true,
            ),
            row(1, &[("register_thing_failed", 10.0)], false),
        ];
        let devices = [
            DeviceMinute {
                register_rejections: 3.0,
                certificates_issued: 55.0,
                connects: 105.0,
                ..DeviceMinute::default()
            },
            DeviceMinute::default(),
        ];
        let p = panel(&aws, &devices, 20);
        assert_eq!((p.rows.len(), p.unsettled), (2, 1));
        assert_eq!(
            p.differences,
            [
                "AWS counted 37 RegisterThing failures the devices never saw (40 in CloudWatch, 3 rejections received)",
                "AWS issued 3 certificates whose response the devices never received (58 issued, 55 received)",
                "AWS throttled 5 connects (Connect.Throttle and Connect.ClientIDThrottle)",
            ]
        );
        // Both sides agreeing: nothing to name.
        assert!(differences(&Totals::default()).is_empty());
    }
}
