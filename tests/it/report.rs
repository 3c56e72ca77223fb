//! The visual reports, from real runs of the binary against its embedded mock (loopback,
//! ephemeral port): `report.html` of every run, `fleetstorm report`, the variants page,
//! `compare.html`, and the pages rendered by headless Chromium.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use fleetstorm::scenario::Scenario;

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_fleetstorm");

/// 80 devices over 4 s, a fifth of the RegisterThing calls answered with an error: every chart of
/// the run page has data, and one threshold passes while the other fails.
const RUN: &str = r#"
name = "report-test"
seed = 5
thresholds = ["success_rate > 10%", "failed < 1"]
[target]
kind = "mock"
[target.mock]
keys = "p256"
[target.mock.faults.register_thing]
error_rate = 0.2
[devices]
count = 10
client_id = "r-{seq:03}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{seq:06}"
DeviceName = "thing-{seq:03}"
DeviceLocation = "{pick:Berlin=1,Seattle=1}"
[[schedule]]
executor = "constant-arrival-rate"
rate = 20
duration = "4s"
"#;

const VARIANTS: &str = r#"
name = "report-variants"
seed = 9
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = 45
client_id = "v-{seq:03}"
certificate = "csr"
[devices.parameters]
SerialNumber = "123456{seq:06}"
DeviceName = "thing-{seq:03}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 15
duration = "3s"
[[variants]]
name = "fast"
[[variants]]
name = "slow"
set = { "target.mock.faults.register_thing.latency" = "20ms..40ms" }
"#;

fn fleetstorm(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().unwrap()
}

/// A fresh folder under cargo's scratch directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("report-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `fleetstorm run` of `body` (with `sets`) into `<scratch>/out`; returns the output folder and
/// the process output.
fn run(name: &str, body: &str, sets: &[&str]) -> (PathBuf, Output) {
    let dir = scratch(name);
    let scenario = dir.join("s.toml");
    std::fs::write(&scenario, body).unwrap();
    let out = dir.join("out");
    let mut args = vec!["run", "--no-tui"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let mut cmd = Command::new(BIN);
    cmd.args(&args).arg(&scenario).arg("--out").arg(&out);
    let output = cmd.output().unwrap();
    (out, output)
}

/// The single run, shared by the tests that only read it.
fn the_run() -> &'static Path {
    static RUN_DIR: OnceLock<PathBuf> = OnceLock::new();
    RUN_DIR.get_or_init(|| {
        let (out, output) = run("run", RUN, &["devices.count=80"]);
        assert_eq!(
            output.status.code(),
            Some(5),
            "a failed threshold gives exit code 5: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("report.html"));
        out
    })
}

/// The variants run (two variants), shared.
fn the_variants() -> &'static Path {
    static VARIANTS_DIR: OnceLock<PathBuf> = OnceLock::new();
    VARIANTS_DIR.get_or_init(|| {
        let (out, output) = run("variants", VARIANTS, &[]);
        assert_success(&output);
        out
    })
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Copy a run folder's files (not its subfolders) into a fresh scratch folder.
fn copy_run(from: &Path, name: &str) -> PathBuf {
    let to = scratch(name);
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    to
}

/// The SVG of the figure with this id.
fn figure_svg<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let start = at + html[at..].find("<svg").expect("figure without an svg");
    let end = start + html[start..].find("</svg>").unwrap() + "</svg>".len();
    &html[start..end]
}

/// Data points drawn per stroke colour: plotters draws data lines as polylines of width 2 or
/// more; axes and ticks are width 1, and a legend sample has exactly two points.
fn series_points(svg: &str) -> BTreeMap<String, usize> {
    let doc = roxmltree::Document::parse(svg).expect("the chart is well-formed SVG");
    let mut out = BTreeMap::new();
    for node in doc.descendants().filter(|n| n.has_tag_name("polyline")) {
        let width: f64 = node
            .attribute("stroke-width")
            .and_then(|w| w.parse().ok())
            .unwrap_or(1.0);
        let points = node
            .attribute("points")
            .unwrap_or("")
            .split_whitespace()
            .count();
        if width >= 2.0 && points > 2 {
            *out.entry(node.attribute("stroke").unwrap_or("").to_string())
                .or_default() += points;
        }
    }
    out
}

/// The texts of a chart (titles, tick labels, legend), trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("the chart is well-formed SVG");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect()
}

/// Every figure id of a page, in order.
fn figure_ids(html: &str) -> Vec<String> {
    html.match_indices("<figure class=\"chart\" id=\"")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// Self-contained: nothing to fetch, nothing to run.
fn assert_self_contained(html: &str) {
    for forbidden in [
        "<script", "<link", "<img", "<iframe", " src=", "url(", "@import",
    ] {
        assert!(!html.contains(forbidden), "the page contains {forbidden:?}");
    }
    // The only URL is the SVG namespace, an identifier that is never fetched.
    let urls = html.matches("http://").count() + html.matches("https://").count();
    let namespaces = html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
    assert_eq!(urls, namespaces, "a URL other than the SVG namespace");
}

#[test]
fn every_run_writes_a_self_contained_report_with_data_in_every_chart() {
    let out = the_run();
    let html = read(&out.join("report.html"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_self_contained(&html);

    let ids = figure_ids(&html);
    for stage in [
        "connect_claim",
        "subscribe",
        "create_certificate",
        "register_thing",
        "connect_device",
        "total",
    ] {
        assert!(ids.contains(&format!("chart-latency-{stage}")), "{ids:?}");
    }
    assert!(!ids.contains(&"chart-latency-telemetry".to_string()));
    for id in ["chart-throughput", "chart-percentiles", "chart-failures"] {
        assert!(ids.contains(&id.to_string()), "{ids:?}");
    }
    for id in &ids {
        let series = series_points(figure_svg(&html, id));
        let points: usize = series.values().sum();
        // 4 s of 1 s intervals at least; the distribution has many quantile steps.
        assert!(points >= 4, "{id}: {series:?}");
        let expected_series = match id.as_str() {
            "chart-throughput" => 4, // offered, started, provisioned, failed
            "chart-percentiles" => 6,
            "chart-failures" => 1, // rejected.register_thing.500.InternalFailure
            _ => 2,                // p50, p99
        };
        assert!(
            series.len() >= expected_series,
            "{id}: {} series drawn, {expected_series} expected: {series:?}",
            series.len()
        );
    }
    let texts = svg_texts(figure_svg(&html, "chart-percentiles"));
    for label in ["0%", "90%", "99%", "percentile"] {
        assert!(texts.iter().any(|t| t == label), "{label} not in {texts:?}");
    }
    let texts = svg_texts(figure_svg(&html, "chart-throughput"));
    for label in [
        "Throughput",
        "devices per second",
        "time since start (s)",
        "provisioned",
    ] {
        assert!(texts.iter().any(|t| t == label), "{label} not in {texts:?}");
    }

    // The summary, the thresholds with their verdicts, the failure reason, the scenario as run.
    let summary: serde_json::Value =
        serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    let provisioned = summary["devices"]["provisioned"].as_u64().unwrap();
    assert!(html.contains(&format!("<div class=\"v\">{provisioned}</div>")));
    // The amplification figures: certificates issued, one per device reached create_certificate.
    let issued = summary["certificates"]["issued"].as_u64().unwrap();
    assert!(issued > 0, "{summary}");
    assert!(html.contains("<h2>Amplification</h2>"), "the section");
    assert!(
        html.contains(&format!(
            "<div class=\"k\">certificates issued</div><div class=\"v\">{issued}</div>"
        )),
        "{issued}"
    );
    assert!(
        html.contains("<code>success_rate &gt; 10%</code>"),
        "escaped"
    );
    assert!(html.contains("<code>failed &lt; 1</code>"));
    assert!(html.contains("<td class=\"pass\">PASS</td>"));
    assert!(html.contains("<td class=\"fail\">FAIL</td>"));
    assert!(html.contains("<span class=\"verdict fail\">FAIL</span>"));
    assert!(html.contains("rejected.register_thing.500.InternalFailure"));
    assert!(html.contains("name = &quot;report-test&quot;"));
    assert!(html.contains("count = 80"), "the --set value, as run");
}

#[test]
fn scenario_toml_is_the_resolved_scenario_and_runs_again() {
    let out = the_run();
    let path = out.join("scenario.toml");
    let scenario = Scenario::load(&path, &[]).expect("scenario.toml loads as a scenario");
    assert_eq!(scenario.name, "report-test");
    assert_eq!(scenario.devices.count, 80, "--set devices.count=80 applied");
    assert_eq!(scenario.thresholds.len(), 2);
    let text = read(&path);
    assert!(text.contains("error_rate = 0.2"), "{text}");

    let slow = read(&the_variants().join("slow").join("scenario.toml"));
    assert!(slow.contains("variant \"slow\""), "{slow}");
    assert!(
        slow.contains("20ms..40ms"),
        "the variant's override: {slow}"
    );
    assert!(!slow.contains("[[variants]]"));
}

#[test]
fn report_command_regenerates_the_same_page() {
    let original = read(&the_run().join("report.html"));
    let dir = copy_run(the_run(), "regenerate");
    std::fs::remove_file(dir.join("report.html")).unwrap();
    let output = fleetstorm(&["report"], &[&dir]);
    assert_success(&output);
    assert_eq!(read(&dir.join("report.html")), original);

    let elsewhere = dir.join("elsewhere.html");
    let output = fleetstorm(&["report"], &[&dir, Path::new("--out"), &elsewhere]);
    assert!(output.status.success());
    assert_eq!(read(&elsewhere), original);
}

fn assert_config_error(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn report_command_names_the_bad_file_and_line() {
    // A number column with text in it, on line 3.
    let dir = copy_run(the_run(), "bad-timeseries");
    let path = dir.join("timeseries.csv");
    let text = read(&path);
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let completed = header.iter().position(|h| *h == "completed").unwrap();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i != 2 {
                return line.to_string();
            }
            let mut cells: Vec<&str> = line.split(',').collect();
            cells[completed] = "lots";
            cells.join(",")
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let output = fleetstorm(&["report"], &[&dir]);
    assert_config_error(
        &output,
        &["timeseries.csv", "line 3", "`completed`", "\"lots\""],
    );

    // A row cut short.
    std::fs::write(&path, format!("{}\n1.0,2\n", header.join(","))).unwrap();
    assert_config_error(
        &fleetstorm(&["report"], &[&dir]),
        &["timeseries.csv", "line: 2"],
    );

    // No summary.json.
    let dir = copy_run(the_run(), "no-summary");
    std::fs::remove_file(dir.join("summary.json")).unwrap();
    assert_config_error(&fleetstorm(&["report"], &[&dir]), &["summary.json"]);

    // A summary.json cut short.
    let dir = copy_run(the_run(), "bad-summary");
    let summary = read(&dir.join("summary.json"));
    std::fs::write(dir.join("summary.json"), &summary[..summary.len() / 2]).unwrap();
    assert_config_error(
        &fleetstorm(&["report"], &[&dir]),
        &["summary.json", "malformed summary", "line"],
    );

    // Not a run folder at all, and no folder at all.
    let empty = scratch("empty");
    assert_config_error(&fleetstorm(&["report"], &[&empty]), &["not a run folder"]);
    assert_config_error(
        &fleetstorm(&["report"], &[&empty.join("missing")]),
        &["missing"],
    );
}

#[test]
fn a_report_that_cannot_be_written_keeps_the_results_and_the_exit_code() {
    let dir = scratch("unwritable");
    let out = dir.join("out");
    // A folder where the page should go: writing it fails, the run does not.
    std::fs::create_dir_all(out.join("report.html")).unwrap();
    let scenario = dir.join("s.toml");
    std::fs::write(
        &scenario,
        RUN.replace("error_rate = 0.2", "error_rate = 0.0"),
    )
    .unwrap();
    let output = fleetstorm(
        &[
            "run",
            "--no-tui",
            "--overwrite",
            "--set",
            "schedule.0.duration=500ms",
        ],
        &[&scenario, Path::new("--out"), &out],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("report not written"), "{stderr}");
    for file in [
        "summary.json",
        "timeseries.csv",
        "failures.csv",
        "latency.hlog",
        "scenario.toml",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
}

#[test]
fn a_variants_run_overlays_its_variants_and_report_rebuilds_the_page() {
    let out = the_variants();
    for v in ["fast", "slow"] {
        assert!(out.join(v).join("report.html").is_file(), "{v}");
    }
    let html = read(&out.join("report.html"));
    assert_self_contained(&html);
    assert!(html.contains("href=\"fast/report.html\""));
    assert!(html.contains("href=\"slow/report.html\""));
    assert!(html.contains("id=\"comparison\""), "the comparison table");
    assert!(html.contains("<code>register_thing.p99_ms</code>"));
    for id in [
        "chart-overlay-throughput",
        "chart-overlay-p99",
        "chart-overlay-percentiles",
    ] {
        let series = series_points(figure_svg(&html, id));
        assert_eq!(series.len(), 2, "{id}: one colour per variant: {series:?}");
        assert!(series.values().all(|n| *n >= 2), "{id}: {series:?}");
    }

    let copy = scratch("variants-copy");
    for v in ["fast", "slow"] {
        let run = copy_run(&out.join(v), &format!("variants-copy-src-{v}"));
        std::fs::rename(&run, copy.join(v)).unwrap();
    }
    let output = fleetstorm(&["report"], &[&copy]);
    assert_success(&output);
    assert_eq!(read(&copy.join("report.html")), html);
}

#[test]
fn compare_writes_compare_html_with_one_series_per_run() {
    let variants = the_variants();
    let dir = scratch("compare");
    let csv = dir.join("compare.csv");
    let output = fleetstorm(
        &["compare"],
        &[
            the_run(),
            &variants.join("fast"),
            &variants.join("slow"),
            Path::new("--out"),
            &csv,
        ],
    );
    assert_success(&output);
    assert!(csv.is_file());
    let html = read(&dir.join("compare.html"));
    assert_self_contained(&html);
    for id in ["chart-overlay-throughput", "chart-overlay-p99"] {
        let series = series_points(figure_svg(&html, id));
        assert_eq!(series.len(), 3, "{id}: one colour per run: {series:?}");
    }
    let texts = svg_texts(figure_svg(&html, "chart-overlay-throughput"));
    for label in ["out", "fast", "slow"] {
        assert!(texts.iter().any(|t| t == label), "{label} not in {texts:?}");
    }
    assert!(html.contains("(baseline)"));
    assert!(html.contains("<code>throughput.provisioned_per_s</code>"));
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium

fn chromium() -> PathBuf {
    common::install::command(
        &["chromium", "chromium-browser"],
        "chromium",
        "the report is checked in headless Chromium",
    )
}

fn headless(profile: &Path, args: &[&str], page: &Path) -> Output {
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// RGB pixels of a PNG, row-major, with its width.
fn decode_png(path: &Path) -> (usize, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width as usize, pixels)
}

/// Whether `p` is within a small distance of `color` (anti-aliasing shifts the edges).
fn near(p: &[u8; 3], color: [u8; 3]) -> bool {
    p.iter()
        .zip(color)
        .all(|(a, b)| (i32::from(*a) - i32::from(b)).abs() <= 12)
}

fn count_near(pixels: &[[u8; 3]], color: [u8; 3]) -> usize {
    pixels.iter().filter(|p| near(p, color)).count()
}

#[test]
fn headless_chromium_renders_the_charts() {
    let page = the_run().join("report.html");
    let dir = scratch("chromium");

    // The DOM after parsing: every chart's SVG survived, with its data lines.
    let dom = headless(&dir.join("profile-dom"), &["--dump-dom"], &page);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let html = read(&page);
    let ids = figure_ids(&html);
    assert!(ids.len() >= 9, "{ids:?}");
    for id in &ids {
        let rendered = series_points(figure_svg(&dom, id));
        assert_eq!(rendered, series_points(figure_svg(&html, id)), "{id}");
    }

    // The screenshot: charts drawn in their colours, not a blank page.
    let shot = dir.join("report.png");
    headless(
        &dir.join("profile-shot"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,4000",
        ],
        &page,
    );
    let (width, pixels) = decode_png(&shot);
    assert_eq!(width, 1280);
    let inked = pixels
        .iter()
        .filter(|p| !near(p, [0xf6, 0xf7, 0xf9]) && !near(p, [255; 3]))
        .count();
    assert!(
        inked > pixels.len() / 50,
        "only {inked} of {} pixels are not background",
        pixels.len()
    );
    let distinct: std::collections::BTreeSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(distinct.len() > 100, "{} colours", distinct.len());
    for (name, rgb) in [
        ("provisioned (green)", [0x59, 0xa1, 0x4f]),
        ("p99 (orange)", [0xf2, 0x8e, 0x2b]),
        ("p50 (blue)", [0x4e, 0x79, 0xa7]),
        ("failed (red)", [0xe1, 0x57, 0x59]),
    ] {
        let n = count_near(&pixels, rgb);
        assert!(n > 300, "{name}: {n} pixels");
    }
}
