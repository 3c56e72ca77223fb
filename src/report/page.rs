//! The pages: maud builds the HTML (escaping every text by construction) around the charts, with
//! inline CSS and no script.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use plotters::style::RGBColor;

use super::chart::{
    distribution_chart, failures_chart, latency_charts, overlay_charts, palette, throughput_chart,
};
use super::input::{RunData, stages_of};
use super::{REPORT_FILE, ReportError};
use crate::compare::Comparison;
use crate::metrics::ThresholdResult;
use crate::results::Summary;

const CSS: &str = r#"
:root { --ink:#222; --muted:#666; --line:#e3e3e3; --ok:#2e7d32; --fail:#c62828; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
header { background:#1f2d3d; color:#fff; padding:20px 32px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header p { margin:0; color:#c9d3de; }
main { max-width:1180px; margin:0 auto; padding:16px 32px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px; margin:16px 0; }
h2 { font-size:17px; margin:0 0 12px; font-weight:600; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(160px,1fr)); gap:12px; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:20px; font-weight:600; margin-top:2px; }
.verdict { display:inline-block; padding:3px 12px; border-radius:12px; font-weight:700; color:#fff; }
.verdict.ok { background:var(--ok); } .verdict.fail { background:var(--fail); } .verdict.none { background:#888; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
th { color:var(--muted); font-weight:600; font-size:12px; }
td.pass { color:var(--ok); font-weight:700; } td.fail { color:var(--fail); font-weight:700; }
td.sig { font-weight:700; color:#b35c00; }
.scroll { overflow-x:auto; }
figure.chart { margin:0 0 12px; }
figure.chart svg { display:block; width:100%; height:auto; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(520px,1fr)); gap:10px; }
.empty { border:1px dashed var(--line); border-radius:6px; padding:12px 16px; color:var(--muted); }
.empty h3 { margin:0 0 4px; font-size:15px; color:var(--ink); }
pre { background:#f3f4f6; border:1px solid var(--line); border-radius:6px; padding:12px; overflow-x:auto;
  font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
.note { color:var(--muted); }
footer { text-align:center; color:var(--muted); font-size:12px; padding:0 0 24px; }
"#;

fn page(title: &str, subtitle: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header { h1 { (title) } p { (subtitle) } }
                main { (body) }
                footer {
                    "fleetstorm " (env!("CARGO_PKG_VERSION"))
                    " · built from the run folder's files; rebuild with "
                    code { "fleetstorm report DIR" }
                }
            }
        }
    }
    .into_string()
}

fn card(key: &str, value: impl maud::Render) -> Markup {
    html! { div.card { div.k { (key) } div.v { (value) } } }
}

/// "PASS", "FAIL" or "no thresholds", as a badge.
fn verdict(thresholds: &[ThresholdResult]) -> Markup {
    let (class, text) = if thresholds.is_empty() {
        ("none", "no thresholds")
    } else if thresholds.iter().all(|t| t.ok) {
        ("ok", "PASS")
    } else {
        ("fail", "FAIL")
    };
    html! { span.verdict.(class) { (text) } }
}

fn ms(v: f64) -> String {
    format!("{v:.2}")
}

fn summary_section(s: &Summary) -> Markup {
    let d = &s.devices;
    html! {
        section #summary {
            h2 { "Summary " (verdict(&s.thresholds)) }
            div.cards {
                (card("planned", d.planned))
                (card("started", d.started))
                (card("provisioned", d.provisioned))
                (card("failed", d.failed))
                (card("dropped", d.dropped))
                (card("throughput", format!("{:.2} /s", s.throughput.provisioned_per_s)))
                (card("success rate", format!("{:.2} %", s.success_rate)))
                (card("duration", format!("{:.1} s", s.duration_s)))
                (card("max start lag", format!("{:.1} ms", s.scheduler.max_start_lag_ms)))
                @if let Some(rate) = s.sustainable_rate_per_s.filter(|_| s.throttle.as_ref().is_some_and(|th| th.has_levels())) {
                    (card("sustainable rate", format!("{rate:.2} /s")))
                }
            }
            @if s.interrupted {
                p.note { "The run was interrupted: arrivals stopped early and in-flight devices were drained." }
            }
        }
    }
}

/// The amplification figures (docs/results.md#amplification), and the embedded mock's count of
/// what the run registered.
fn amplification_section(s: &Summary) -> Markup {
    let (c, a, n) = (&s.certificates, &s.attempts, &s.connects);
    html! {
        section #amplification {
            h2 { "Amplification" }
            div.cards {
                (card("certificates issued", c.issued))
                (card("certificates per provisioned", format!("{:.2}", c.per_provisioned)))
                (card("certificates orphaned", c.orphaned))
                (card("attempts mean", format!("{:.2}", a.mean)))
                (card("attempts max", a.max))
                (card("connects", n.total))
                (card("connects per provisioned", format!("{:.2}", n.per_provisioned)))
                (card("max connects/s per client ID", n.max_per_client_id_per_s))
                (card(&format!("cost ({}, {})", s.cost.currency, s.cost.label), format!("${}", crate::results::cost::amount(s.cost.total))))
            }
            @if let Some(m) = &s.mock {
                p.note { (format!(
                    "The embedded mock's registry gained {} things, {} ACTIVE and {} PENDING_ACTIVATION certificates during the run.",
                    m.things, m.certificates_active, m.certificates_pending
                )) }
            }
            @if n.max_per_client_id_per_s > 1 {
                p.note { "A client ID connected more than once in one second: AWS allows one connect per second per client ID." }
            }
        }
    }
}

fn thresholds_section(s: &Summary) -> Markup {
    html! {
        section #thresholds {
            h2 { "Thresholds " (verdict(&s.thresholds)) }
            @if s.thresholds.is_empty() {
                p.note { "The scenario sets no thresholds." }
            } @else {
                table {
                    tr { th { "threshold" } th { "value" } th { "verdict" } }
                    @for t in &s.thresholds {
                        tr {
                            td { code { (t.expr) } }
                            td { (t.value.map_or("no data".to_string(), |v| format!("{v:.3}"))) }
                            @if t.ok { td.pass { "PASS" } } @else { td.fail { "FAIL" } }
                        }
                    }
                }
            }
        }
    }
}

fn stages_section(s: &Summary) -> Markup {
    html! {
        section #stages {
            h2 { "Stages (latency from intended start, ms)" }
            div.scroll { table {
                tr {
                    th { "stage" } th { "count" } th { "mean" } th { "p50" } th { "p90" }
                    th { "p99" } th { "p99.9" } th { "max" } th { "service p50" } th { "service p99" }
                }
                @for stage in stages_of(s) {
                    @let st = &s.stages[&stage];
                    @let l = &st.latency;
                    tr {
                        td { (stage) } td { (l.count) } td { (ms(l.mean_ms)) } td { (ms(l.p50_ms)) }
                        td { (ms(l.p90_ms)) } td { (ms(l.p99_ms)) } td { (ms(l.p999_ms)) }
                        td { (ms(l.max_ms)) } td { (ms(st.service.p50_ms)) } td { (ms(st.service.p99_ms)) }
                    }
                }
            } }
        }
    }
}

fn failures_section(s: &Summary, chart: Markup) -> Markup {
    let mut reasons: Vec<(&String, &u64)> = s.failures.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    html! {
        section #failures {
            h2 { "Failures" }
            (chart)
            @if !reasons.is_empty() {
                table {
                    tr { th { "reason" } th { "devices" } }
                    @for (reason, n) in reasons { tr { td { code { (reason) } } td { (n) } } }
                }
            }
        }
    }
}

fn throttle_section(s: &Summary) -> Markup {
    // One level is the whole run: the summary above says it all.
    let Some(th) = s.throttle.as_ref().filter(|th| th.has_levels()) else {
        return html! {};
    };
    html! {
        section #throttle {
            h2 { "Rate levels (throttle-limit finder)" }
            p {
                "Sustainable rate: "
                strong { (s.sustainable_rate_per_s.map_or("none of the levels".to_string(), |r| format!("{r:.2}/s"))) }
                @if let Some(stage) = &th.throttling_stage { " · throttling stage: " code { (stage) } }
            }
            table {
                tr { th { "offered rate (/s)" } th { "arrivals" } th { "completed" } th { "throttled" } th { "verdict" } }
                @for l in &th.levels {
                    tr {
                        td { (format!("{:.2}", l.target_per_s)) } td { (l.offered) }
                        td { (format!("{:.1} %", l.completion_ratio * 100.0)) }
                        td { (format!("{:.2} %", l.throttled_fraction * 100.0)) }
                        @if l.sustainable { td.pass { "sustainable" } } @else { td.fail { "not sustainable" } }
                    }
                }
            }
        }
    }
}

/// Pauses and multiplier changes made from the live dashboard (none: no section).
fn rate_changes_section(s: &Summary) -> Markup {
    if s.rate_changes.is_empty() {
        return html! {};
    }
    html! {
        section #rate-changes {
            h2 { "Changes made during the run" }
            p.note { "From the live dashboard; the throughput chart's target line follows them." }
            table {
                tr { th { "at (s)" } th { "arrivals" } th { "rate multiplier" } }
                @for c in &s.rate_changes {
                    tr {
                        td { (format!("{:.1}", c.elapsed_s)) }
                        td { @if c.paused { "paused" } @else { "running" } }
                        td { (format!("x{:.1}", c.multiplier)) }
                    }
                }
            }
        }
    }
}

fn scenario_section(run: &RunData) -> Markup {
    html! {
        section #scenario {
            h2 { "Scenario as run" }
            @match &run.scenario {
                Some(text) => pre { (text) },
                None => p.note { "No scenario.toml in this run folder: it was written by a fleetstorm older than the report." },
            }
        }
    }
}

/// " · shard I of N" (with the start time and a late start's lag) for a shard's page.
fn shard_note(s: &crate::results::Summary) -> String {
    let Some(sh) = &s.shard else {
        return String::new();
    };
    let mut note = format!(" · shard {} of {}", sh.index, sh.count);
    if let Some(at) = &sh.start_at {
        note += &format!(", start at {at}");
        if sh.start_lag_s >= 0.001 {
            note += &format!(" ({:.3} s late)", sh.start_lag_s);
        }
    }
    note
}

/// The page of one run.
pub fn render_run(run: &RunData, failures: &[(f64, String)]) -> Result<String, ReportError> {
    let s = &run.summary;
    let title = match &s.variant {
        Some(v) => format!("fleetstorm: {} / {v}", s.scenario),
        None => format!("fleetstorm: {}", s.scenario),
    };
    let subtitle = format!(
        "started {} · against {} · {:.1} s{}{}",
        s.started_at,
        s.endpoint,
        s.duration_s,
        shard_note(s),
        if s.interrupted { " · interrupted" } else { "" }
    ) + if s.complete { "" } else { " · INCOMPLETE" }
        + &super::notice::merge_note(s)
            .map(|n| format!(" · {n}"))
            .unwrap_or_default();
    let body = html! {
        (super::notice::incomplete_banner(s))
        (super::notice::merge_banner(s))
        (summary_section(s))
        (amplification_section(s))
        (thresholds_section(s))
        section #throughput { h2 { "Throughput over time" } (throughput_chart(run)?) }
        (rate_changes_section(s))
        section #latency {
            h2 { "Latency over time, per stage" }
            p.note { "p50 and p99 of the devices that finished each stage in each 1 s interval; gaps are intervals where none did." }
            (latency_charts(run)?)
        }
        section #percentiles {
            h2 { "Latency distribution per stage" }
            p.note { "From latency.hlog, all intervals merged; the x axis spreads the tail (90 %, 99 %, 99.9 %, ...)." }
            (distribution_chart(run)?)
        }
        (stages_section(s))
        (failures_section(s, failures_chart(run, failures)?))
        @if let Some(panel) = super::cloudwatch::section(run, failures) { (panel) }
        (throttle_section(s))
        (scenario_section(run))
    };
    Ok(page(&title, &subtitle, body))
}

/// Per run: the key figures, linked to its own report when `link` (variants: folders below).
fn runs_table(runs: &[RunData], link: bool) -> Markup {
    html! {
        div.scroll { table {
            tr {
                th { "run" } th { "provisioned" } th { "failed" } th { "dropped" } th { "throughput (/s)" }
                th { "success rate" } th { "total p50 (ms)" } th { "total p99 (ms)" }
                th { "certificates per provisioned" } th { "attempts max" } th { "thresholds" }
            }
            @for (i, r) in runs.iter().enumerate() {
                @let s = &r.summary;
                @let total = s.stages.get("total").map(|t| t.latency).unwrap_or_default();
                tr {
                    td {
                        span style=(format!("color:{}", css_color(palette(i)))) { "■ " }
                        @if link {
                            @let name = r.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                            a href=(format!("{name}/{REPORT_FILE}")) { (r.label) }
                        } @else {
                            (r.label) br; small.note { (r.dir.display()) }
                        }
                    }
                    td { (s.devices.provisioned) "/" (s.devices.planned) } td { (s.devices.failed) }
                    td { (s.devices.dropped) } td { (format!("{:.2}", s.throughput.provisioned_per_s)) }
                    td { (format!("{:.2} %", s.success_rate)) } td { (ms(total.p50_ms)) } td { (ms(total.p99_ms)) }
                    td { (format!("{:.2}", s.certificates.per_provisioned)) } td { (s.attempts.max) }
                    td { (verdict(&s.thresholds)) }
                }
            }
        } }
    }
}

fn css_color(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn comparison_section(c: &Comparison) -> Markup {
    let (header, rows) = c.cells();
    html! {
        section #comparison {
            h2 { "Comparison against " (c.runs()[0]) " (baseline)" }
            div.scroll { table {
                tr { @for h in &header { th { (h) } } }
                @for row in &rows {
                    tr {
                        @for (i, cell) in row.iter().enumerate() {
                            @if i == 0 { td { code { (cell) } } }
                            @else if cell == "*" { td.sig title="beyond run-to-run noise" { (cell) } }
                            @else { td { (cell) } }
                        }
                    }
                }
            } }
            p.note {
                "* = beyond run-to-run noise: the 95 % bootstrap interval of (run − baseline) over the runs' 1 s intervals excludes 0 (about 1 tested cell in 20 is flagged by chance)."
            }
            @for note in c.notes() { p.note { "Note: " (note) } }
        }
    }
}

/// The page of several runs overlaid: a variants folder (`link`: each run's own report is in
/// the folder below) or `compare`.
pub fn render_overlay(
    title: &str,
    runs: &[RunData],
    comparison: Option<&Comparison>,
    link: bool,
) -> Result<String, ReportError> {
    let subtitle = format!(
        "{} runs overlaid, one colour per run{}",
        runs.len(),
        if comparison.is_some() {
            "; the first is the baseline"
        } else {
            ""
        }
    );
    let body = html! {
        section #runs { h2 { "Runs" } (runs_table(runs, link)) }
        section #overlay { h2 { "Curves" } (overlay_charts(runs)?) }
        @if let Some(c) = comparison { (comparison_section(c)) }
        @if let Some(text) = runs.first().and_then(|r| r.scenario.as_ref()) {
            section #scenario { h2 { "Scenario as run (" (runs[0].label) ")" } pre { (text) } }
        }
    };
    Ok(page(title, &subtitle, body))
}
