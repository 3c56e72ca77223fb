//! The CloudWatch panel of a run's page: per minute, what the devices recorded beside what AWS
//! recorded (`cloudwatch.csv`, written by `fleetstorm aws metrics`), and the differences named.
//! A run without `cloudwatch.csv` has no panel.

use maud::{Markup, html};

use super::input::RunData;
use crate::results::cloudwatch::{self, CloudWatchRow, Panel};

/// The panel's figures for `run` (None without `cloudwatch.csv`).
pub(super) fn panel(run: &RunData, failures: &[(f64, String)]) -> Option<Panel> {
    let rows: &[CloudWatchRow] = run.cloudwatch.as_deref()?;
    let names: Vec<String> = ["completed", "certificates_issued", "connects"]
        .into_iter()
        .map(str::to_string)
        .chain(
            run.timeseries
                .header()
                .iter()
                .filter(|h| h.starts_with("failed_"))
                .cloned(),
        )
        .collect();
    let elapsed = run.timeseries.elapsed();
    let mut series = Vec::new();
    for name in &names {
        let Some(values) = run.timeseries.column(name) else {
            continue;
        };
        for (t, v) in elapsed.iter().zip(values) {
            if let Some(v) = v {
                series.push((*t, name.as_str(), v));
            }
        }
    }
    let offset_s = humantime::parse_rfc3339(&run.summary.started_at)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64() % 60.0);
    let devices = cloudwatch::device_minutes(offset_s, rows.len(), &series, failures);
    Some(cloudwatch::panel(
        rows,
        &devices,
        run.summary.certificates.registered,
    ))
}

fn n(v: f64) -> String {
    format!("{}", v.round() as i64)
}

/// The section (None without `cloudwatch.csv`).
pub(super) fn section(run: &RunData, failures: &[(f64, String)]) -> Option<Markup> {
    let p = panel(run, failures)?;
    let failed =
        |d: &cloudwatch::DeviceMinute, class: &str| d.failed.get(class).copied().unwrap_or(0.0);
    let other = |d: &cloudwatch::DeviceMinute| {
        d.failed
            .iter()
            .filter(|(k, _)| {
                !["rejected", "throttled", "hook_denied", "timeout"].contains(&k.as_str())
            })
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    Some(html! {
        section #cloudwatch {
            h2 { "Devices and AWS, per minute (CloudWatch)" }
            @if p.differences.is_empty() {
                p.note { "AWS's counts and the devices' agree over the window." }
            } @else {
                ul { @for d in &p.differences { li { (d) } } }
            }
            @if p.unsettled > 0 {
                p.note { (format!(
                    "The last {} minute(s) may not have been in CloudWatch yet when read: run `fleetstorm aws metrics RUN_DIR` again.",
                    p.unsettled
                )) }
            }
            div.scroll { table {
                tr {
                    th { "minute (UTC)" }
                    th colspan="7" { "devices" }
                    th colspan="7" { "AWS" }
                }
                tr {
                    th {}
                    th { "provisioned" } th { "rejected" } th { "throttled" } th { "hook denied" }
                    th { "timeouts" } th { "other failed" } th { "certs received" }
                    th { "connect ok" } th { "connect throttled" } th { "certs issued" }
                    th { "create failed" } th { "RegisterThing" } th { "RegisterThing failed" }
                    th { "things registered" }
                }
                @for r in &p.rows {
                    tr {
                        td { (r.minute) @if !r.aws.settled { " *" } }
                        td { (n(r.devices.provisioned)) }
                        td { (n(failed(&r.devices, "rejected"))) }
                        td { (n(failed(&r.devices, "throttled"))) }
                        td { (n(failed(&r.devices, "hook_denied"))) }
                        td { (n(failed(&r.devices, "timeout"))) }
                        td { (n(other(&r.devices))) }
                        td { (n(r.devices.certificates_issued)) }
                        td { (n(r.aws.get("connect_success"))) }
                        td { (n(r.aws.get("connect_throttle") + r.aws.get("connect_client_id_throttle"))) }
                        td { (n(r.aws.get("create_keys_calls") - r.aws.get("create_keys_failed") + r.aws.get("create_csr_calls") - r.aws.get("create_csr_failed"))) }
                        td { (n(r.aws.get("create_keys_failed") + r.aws.get("create_csr_failed"))) }
                        td { (n(r.aws.get("register_thing_calls"))) }
                        td { (n(r.aws.get("register_thing_failed"))) }
                        td { (n(r.aws.get("things_registered"))) }
                    }
                }
            } }
            p.note { "Devices: failed devices by class and certificates received, from timeseries.csv; AWS: the AWS/IoT metrics in cloudwatch.csv (an empty minute counts 0). * not settled when read." }
        }
    })
}
