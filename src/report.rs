//! The visual reports: `report.html` for one run, the variants page (`<results>/report.html`,
//! every variant overlaid) and `compare.html` (the compared runs overlaid, with the comparison
//! table).
//!
//! Each page is one self-contained file: inline CSS, charts drawn by plotters into inline SVG, no
//! script, nothing fetched, so it opens offline and can be mailed on its own. Pages are built only
//! from the files of the run folders (`summary.json`, `timeseries.csv`, `failures.csv`,
//! `latency.hlog`, `scenario.toml`), which is what lets `fleetstorm report` regenerate them; the
//! same files give the same bytes (no generation timestamp).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use crate::compare::{self, CompareError, Comparison};
use crate::metrics::{STAGE_NAMES, StageSummary, ThresholdResult};
use crate::output::{DeviceCounts, Scheduler, ThrottleAnalysis, Throughput};

/// The file name of a run's (or a variants folder's) report.
pub const REPORT_FILE: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "{}: not a run folder (no summary.json in it, nor in any folder directly below it)",
        path.display()
    )]
    NotARun { path: PathBuf },
    #[error(transparent)]
    Compare(#[from] CompareError),
    #[error("drawing the chart {chart:?}: {detail}")]
    Chart { chart: String, detail: String },
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReportError {
    /// Whether the error is in the input files (as opposed to drawing or writing the report).
    pub fn is_input(&self) -> bool {
        match self {
            ReportError::Read { .. }
            | ReportError::Invalid { .. }
            | ReportError::NotARun { .. } => true,
            ReportError::Compare(e) => !matches!(e, CompareError::Write { .. }),
            ReportError::Chart { .. } | ReportError::Write { .. } => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// The part of `summary.json` the report shows. Unknown fields are ignored and optional ones may
/// be missing, so summaries of older and newer versions read alike.
#[derive(Debug, Clone, Deserialize)]
pub struct SummaryIn {
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub interrupted: bool,
    #[serde(default)]
    pub variant: Option<String>,
    pub devices: DeviceCounts,
    pub throughput: Throughput,
    pub success_rate: f64,
    pub stages: BTreeMap<String, StageSummary>,
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    #[serde(default)]
    pub scheduler: Scheduler,
    #[serde(default)]
    pub sustainable_rate_per_s: Option<f64>,
    #[serde(default)]
    pub throttle: Option<ThrottleAnalysis>,
}

/// `timeseries.csv`, read by header name: the columns a run writes today, plus any later ones.
#[derive(Debug, Clone)]
pub struct Timeseries {
    header: Vec<String>,
    /// Row-major; `None` for an empty cell.
    rows: Vec<Vec<Option<f64>>>,
}

const REQUIRED_COLUMNS: [&str; 5] = ["elapsed_s", "offered", "started", "completed", "failed"];

/// Whether fleetstorm writes (or wrote) this column: its cells must be numbers. Cells of other
/// columns (added later, by hand, ...) that are not numbers are ignored.
fn known_column(name: &str) -> bool {
    const OTHERS: [&str; 5] = [
        "in_flight",
        "dropped_total",
        "start_lag_max_ms",
        "target_rate_per_s",
        "rate_multiplier",
    ];
    REQUIRED_COLUMNS.contains(&name)
        || OTHERS.contains(&name)
        || name
            .strip_prefix("failed_")
            .is_some_and(|c| crate::device::FailureReason::CLASSES.contains(&c))
        || STAGE_NAMES.iter().any(|stage| {
            name.strip_prefix(stage)
                .is_some_and(|rest| rest == "_p50_ms" || rest == "_p99_ms")
        })
}

impl Timeseries {
    pub fn read(path: &Path) -> Result<Timeseries, ReportError> {
        let invalid = |detail: String| ReportError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let mut reader = csv::Reader::from_reader(open(path)?);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| invalid(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        if let Some(missing) = REQUIRED_COLUMNS
            .iter()
            .find(|c| !header.iter().any(|h| h == *c))
        {
            return Err(invalid(format!("line 1: no `{missing}` column")));
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| invalid(e.to_string()))?;
            let line = record.position().map_or(0, |p| p.line());
            let row = record
                .iter()
                .zip(&header)
                .map(|(cell, name)| {
                    let cell = cell.trim();
                    if cell.is_empty() {
                        return Ok(None);
                    }
                    match cell.parse::<f64>() {
                        Ok(v) => Ok(Some(v)),
                        Err(_) if !known_column(name) => Ok(None),
                        Err(_) => Err(invalid(format!(
                            "line {line}: column `{name}`: {cell:?} is not a number"
                        ))),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(row);
        }
        Ok(Timeseries { header, rows })
    }

    fn column(&self, name: &str) -> Option<Vec<Option<f64>>> {
        let i = self.header.iter().position(|h| h == name)?;
        Some(
            self.rows
                .iter()
                .map(|r| r.get(i).copied().flatten())
                .collect(),
        )
    }

    fn elapsed(&self) -> Vec<f64> {
        self.column("elapsed_s")
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect()
    }

    /// A per-interval count column over the full intervals: (interval end, count, interval
    /// length). Intervals shorter than half a second (the partial last one) are left out, as
    /// are empty cells.
    pub fn full_intervals(&self, name: &str) -> Vec<(f64, f64, f64)> {
        let Some(values) = self.column(name) else {
            return Vec::new();
        };
        let mut previous = 0.0;
        let mut out = Vec::new();
        for (t, v) in self.elapsed().into_iter().zip(values) {
            let length = t - previous;
            previous = t;
            if length >= 0.5
                && let Some(v) = v
            {
                out.push((t, v, length));
            }
        }
        out
    }

    /// A per-interval count column as a rate per second, at each full interval's end.
    fn rate(&self, name: &str) -> Vec<(f64, f64)> {
        self.full_intervals(name)
            .into_iter()
            .map(|(t, n, length)| (t, n / length))
            .collect()
    }

    /// A column as it is (a rate, or a latency in ms), empty cells as gaps.
    fn points(&self, name: &str) -> Vec<(f64, f64)> {
        let values = self.column(name).unwrap_or_default();
        self.elapsed()
            .into_iter()
            .zip(values)
            .map(|(t, v)| (t, v.unwrap_or(f64::NAN)))
            .collect()
    }

    /// A latency column: 0 means "nothing finished that stage in the interval", drawn as a gap.
    fn latency(&self, name: &str) -> Vec<(f64, f64)> {
        self.points(name)
            .into_iter()
            .map(|(t, v)| (t, if v > 0.0 { v } else { f64::NAN }))
            .collect()
    }
}

/// One run folder, read.
#[derive(Debug)]
pub struct RunData {
    pub dir: PathBuf,
    /// The variant name, else the folder name.
    pub label: String,
    pub summary: SummaryIn,
    pub timeseries: Timeseries,
    /// Per `latency.hlog` tag, the interval histograms merged.
    pub histograms: BTreeMap<String, Histogram<u64>>,
    /// `scenario.toml`; `None` for a run written before fleetstorm wrote it.
    pub scenario: Option<String>,
}

fn open(path: &Path) -> Result<std::fs::File, ReportError> {
    std::fs::File::open(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ReportError> {
    std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_summary(path: &Path) -> Result<SummaryIn, ReportError> {
    serde_json::from_slice(&read_bytes(path)?).map_err(|e| ReportError::Invalid {
        path: path.to_path_buf(),
        detail: format!("malformed summary: {e}"),
    })
}

impl RunData {
    pub fn read(dir: &Path) -> Result<RunData, ReportError> {
        let summary = read_summary(&dir.join("summary.json"))?;
        let timeseries = Timeseries::read(&dir.join("timeseries.csv"))?;
        let path = dir.join("latency.hlog");
        let mut histograms = BTreeMap::new();
        for (tag, intervals) in compare::parse_hlog(&path, &read_bytes(&path)?)? {
            let mut merged = crate::metrics::histogram();
            for h in &intervals {
                merged.add(h).map_err(|e| ReportError::Invalid {
                    path: path.clone(),
                    detail: format!("tag {tag}: {e:?}"),
                })?;
            }
            histograms.insert(tag, merged);
        }
        let path = dir.join("scenario.toml");
        let scenario = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(ReportError::Read { path, source }),
        };
        let label = summary
            .variant
            .clone()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| {
                dir.file_name().map_or_else(
                    || dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            });
        Ok(RunData {
            dir: dir.to_path_buf(),
            label,
            summary,
            timeseries,
            histograms,
            scenario,
        })
    }
}

/// `failures.csv`: (elapsed seconds, reason) per failure and dropped arrival.
fn read_failures(path: &Path) -> Result<Vec<(f64, String)>, ReportError> {
    let invalid = |detail: String| ReportError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = csv::Reader::from_reader(open(path)?);
    let headers = reader
        .headers()
        .map_err(|e| invalid(e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| invalid(format!("line 1: no `{name}` column")))
    };
    let (elapsed_col, reason_col) = (column("elapsed_s")?, column("reason")?);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = record.get(elapsed_col).unwrap_or("").trim();
        let elapsed = cell.parse::<f64>().map_err(|_| {
            invalid(format!(
                "line {line}: column `elapsed_s`: {cell:?} is not a number"
            ))
        })?;
        out.push((elapsed, record.get(reason_col).unwrap_or("").to_string()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Charts

/// Tableau 10: distinguishable, print- and colour-blind-friendly.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];
const BLUE: RGBColor = PALETTE[0];
const ORANGE: RGBColor = PALETTE[1];
const RED: RGBColor = PALETTE[2];
const GREEN: RGBColor = PALETTE[4];
const PURPLE: RGBColor = PALETTE[6];
const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
const GRID: RGBColor = RGBColor(0xe6, 0xe6, 0xe6);
const FONT: &str = "sans-serif";

fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One line of a chart; a non-finite `y` is a gap.
struct Line {
    label: String,
    color: RGBColor,
    dashed: bool,
    /// Drawn as a wide translucent band, so that a line with the same values stays visible on it.
    band: bool,
    points: Vec<(f64, f64)>,
}

impl Line {
    fn new(label: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Line {
        Line {
            label: label.into(),
            color,
            dashed: false,
            band: false,
            points,
        }
    }

    fn dashed(mut self) -> Line {
        self.dashed = true;
        self
    }

    fn band(mut self) -> Line {
        self.band = true;
        self
    }

    fn style(&self) -> ShapeStyle {
        if self.band {
            ShapeStyle::from(&self.color.mix(0.35)).stroke_width(7)
        } else {
            ShapeStyle::from(&self.color).stroke_width(2)
        }
    }

    /// The runs of consecutive finite points.
    fn segments(&self) -> Vec<Vec<(f64, f64)>> {
        self.points
            .split(|(x, y)| !(x.is_finite() && y.is_finite()))
            .filter(|s| !s.is_empty())
            .map(<[_]>::to_vec)
            .collect()
    }
}

/// How an x axis is labelled.
#[derive(Clone, Copy)]
enum XAxis {
    /// Seconds since the start of the run.
    Seconds,
    /// `-log10(1 - q)` of quantile `q`, labelled as a percentile ("nines").
    Nines,
}

struct Chart<'a> {
    /// Also the figure's `id` in the page.
    id: String,
    title: &'a str,
    y_desc: &'a str,
    size: (u32, u32),
    x_axis: XAxis,
    /// The x range; else the data's.
    x_range: Option<(f64, f64)>,
}

/// `0.25`, `3.5`, `42`, `1200`: as few digits as the value needs.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_string()
    }
}

/// The percentile at `x` nines: 0 → 0%, 1 → 90%, 2 → 99%, 3 → 99.9%.
fn nines_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

/// Draw `lines` with plotters into an SVG string; `None` when there is no data point at all.
fn draw(chart: &Chart<'_>, lines: &[Line]) -> Result<Option<String>, ReportError> {
    let finite: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|l| l.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if finite.is_empty() {
        return Ok(None);
    }
    let (mut x0, mut x1) = chart.x_range.unwrap_or_else(|| {
        finite
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| {
                (lo.min(*x), hi.max(*x))
            })
    });
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let y_max = finite.iter().map(|(_, y)| *y).fold(0.0, f64::max);
    let y1 = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };
    let fail = |e: &dyn std::fmt::Display| ReportError::Chart {
        chart: chart.title.to_string(),
        detail: e.to_string(),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, chart.size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let longest = lines.iter().map(|l| l.label.chars().count()).max();
        let legend_width = (longest.unwrap_or(0) as u32 * 7 + 52).clamp(110, 340);
        let (plot, legend) = root.split_horizontally(chart.size.0.saturating_sub(legend_width));
        let mut ctx = ChartBuilder::on(&plot)
            .caption(chart.title, (FONT, 19).into_font().color(&INK))
            .margin(10)
            .x_label_area_size(46)
            .y_label_area_size(62)
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(|e| fail(&e))?;
        let nines = |x: &f64| nines_label(*x);
        let seconds = |x: &f64| tick(*x);
        let y_ticks = |y: &f64| tick(*y);
        let mut mesh = ctx.configure_mesh();
        mesh.light_line_style(GRID.mix(0.5))
            .bold_line_style(GRID)
            .axis_style(INK.mix(0.6))
            .label_style((FONT, 12).into_font().color(&INK))
            .axis_desc_style((FONT, 13).into_font().color(&INK))
            .y_desc(chart.y_desc)
            .y_label_formatter(&y_ticks);
        match chart.x_axis {
            XAxis::Seconds => mesh
                .x_desc("time since start (s)")
                .x_label_formatter(&seconds),
            XAxis::Nines => mesh
                .x_desc("percentile")
                .x_labels(x1.round() as usize + 1)
                .x_label_formatter(&nines),
        };
        mesh.draw().map_err(|e| fail(&e))?;
        for line in lines {
            let style = line.style();
            for segment in line.segments() {
                if line.dashed {
                    ctx.draw_series(DashedLineSeries::new(segment, 7, 5, style))
                        .map_err(|e| fail(&e))?;
                } else {
                    ctx.draw_series(LineSeries::new(segment, style))
                        .map_err(|e| fail(&e))?;
                }
            }
        }
        draw_legend(&legend, lines).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(Some(svg))
}

/// The legend, in its own column right of the plot so that it never hides data.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[Line],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let top = 44;
    for (i, line) in lines.iter().enumerate() {
        let y = top + 22 * i as i32;
        let style = line.style();
        if line.dashed {
            area.draw(&PathElement::new(vec![(6, y), (14, y)], style))?;
            area.draw(&PathElement::new(vec![(20, y), (28, y)], style))?;
        } else {
            area.draw(&PathElement::new(vec![(6, y), (28, y)], style))?;
        }
        area.draw(&Text::new(
            line.label.clone(),
            (36, y - 7),
            (FONT, 13).into_font().color(&INK),
        ))?;
    }
    Ok(())
}

/// A chart in a `<figure>`, or a note when it has no data.
fn figure(chart: &Chart<'_>, lines: &[Line], empty: &str) -> Result<Markup, ReportError> {
    let svg = draw(chart, lines)?;
    Ok(html! {
        figure.chart id=(chart.id) {
            @match svg {
                Some(svg) => (PreEscaped(svg)),
                None => div.empty { h3 { (chart.title) } p { (empty) } },
            }
        }
    })
}

const WIDE: (u32, u32) = (1100, 380);
const HALF: (u32, u32) = (545, 300);

/// The run's x range: from 0 to its last interval (or its duration).
fn seconds_range(runs: &[&RunData]) -> (f64, f64) {
    let end = runs
        .iter()
        .flat_map(|r| r.timeseries.elapsed())
        .chain(runs.iter().map(|r| r.summary.duration_s))
        .filter(|t| t.is_finite())
        .fold(1.0, f64::max);
    (0.0, end)
}

/// Latency against percentile on a "nines" axis, as HdrHistogram plots: the points where the
/// quantile iteration stops, `x = -log10(1 - q)`, capped at `log10(count)` (the last sample).
fn nines_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let cap = (h.len() as f64).log10().max(1.0);
    h.iter_quantiles(4)
        .map(|v| {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 {
                cap
            } else {
                (-(1.0 - q).log10()).min(cap)
            };
            (x, v.value_iterated_to() as f64 / 1000.0)
        })
        .collect()
}

fn nines_range(lines: &[Line]) -> (f64, f64) {
    let end = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    (0.0, end.ceil())
}

fn throughput_chart(run: &RunData) -> Result<Markup, ReportError> {
    let ts = &run.timeseries;
    let mut lines = vec![
        Line::new("offered", BLUE, ts.rate("offered")).band(),
        Line::new("started", PURPLE, ts.rate("started")),
        Line::new("provisioned", GREEN, ts.rate("completed")),
        Line::new("failed", RED, ts.rate("failed")),
    ];
    if ts.column("target_rate_per_s").is_some() {
        lines.push(Line::new("target", INK, ts.points("target_rate_per_s")).dashed());
    }
    let chart = Chart {
        id: "chart-throughput".into(),
        title: "Throughput",
        y_desc: "devices per second",
        size: WIDE,
        x_axis: XAxis::Seconds,
        x_range: Some(seconds_range(&[run])),
    };
    figure(&chart, &lines, "No interval was recorded.")
}

/// Stages in output order, then any other stage the summary names.
fn stages_of(summary: &SummaryIn) -> Vec<String> {
    let known = STAGE_NAMES.iter().map(|s| s.to_string());
    let others: BTreeSet<String> = summary
        .stages
        .keys()
        .filter(|s| !STAGE_NAMES.contains(&s.as_str()))
        .cloned()
        .collect();
    known
        .chain(others)
        .filter(|s| summary.stages.get(s).is_some_and(|st| st.latency.count > 0))
        .collect()
}

fn latency_charts(run: &RunData) -> Result<Markup, ReportError> {
    let range = seconds_range(&[run]);
    let mut figures = Vec::new();
    for stage in stages_of(&run.summary) {
        let ts = &run.timeseries;
        let lines = [
            Line::new("p50", BLUE, ts.latency(&format!("{stage}_p50_ms"))),
            Line::new("p99", ORANGE, ts.latency(&format!("{stage}_p99_ms"))),
        ];
        let title = format!("{stage}: latency over time");
        let chart = Chart {
            id: format!("chart-latency-{stage}"),
            title: &title,
            y_desc: "latency from intended start (ms)",
            size: HALF,
            x_axis: XAxis::Seconds,
            x_range: Some(range),
        };
        figures.push(figure(
            &chart,
            &lines,
            "No per-interval percentiles recorded.",
        )?);
    }
    Ok(html! { div.grid { @for f in &figures { (f) } } })
}

fn distribution_chart(run: &RunData) -> Result<Markup, ReportError> {
    let lines: Vec<Line> = stages_of(&run.summary)
        .iter()
        .enumerate()
        .filter_map(|(i, stage)| {
            let h = run.histograms.get(stage).filter(|h| !h.is_empty())?;
            Some(Line::new(stage.clone(), palette(i), nines_points(h)))
        })
        .collect();
    let chart = Chart {
        id: "chart-percentiles".into(),
        title: "Latency by percentile (whole run)",
        y_desc: "latency from intended start (ms)",
        size: WIDE,
        x_axis: XAxis::Nines,
        x_range: Some(nines_range(&lines)),
    };
    figure(&chart, &lines, "latency.hlog holds no latency data.")
}

/// The reasons drawn one by one; the rest are summed as "other".
const MAX_REASONS: usize = 8;

fn failures_chart(run: &RunData, failures: &[(f64, String)]) -> Result<Markup, ReportError> {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, reason) in failures {
        *totals.entry(reason.as_str()).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<&str> = ranked.iter().take(MAX_REASONS).map(|r| r.0).collect();
    let other = ranked.len() > MAX_REASONS;
    let (_, end) = seconds_range(&[run]);
    let seconds = end.ceil().max(1.0) as usize;
    let mut counts = vec![vec![0u64; seconds]; shown.len() + usize::from(other)];
    for (t, reason) in failures {
        let second = (t.max(0.0).floor() as usize).min(seconds - 1);
        let series = shown
            .iter()
            .position(|r| r == reason)
            .unwrap_or(shown.len());
        counts[series][second] += 1;
    }
    let labels = shown
        .iter()
        .map(|s| s.to_string())
        .chain(other.then(|| "other".to_string()));
    let lines: Vec<Line> = labels
        .zip(&counts)
        .enumerate()
        .map(|(i, (label, per_second))| {
            let points = per_second
                .iter()
                .enumerate()
                .map(|(s, n)| (s as f64 + 1.0, *n as f64))
                .collect();
            Line::new(label, palette(i + 2), points)
        })
        .collect();
    let chart = Chart {
        id: "chart-failures".into(),
        title: "Failures by reason",
        y_desc: "failures per second",
        size: WIDE,
        x_axis: XAxis::Seconds,
        x_range: Some((0.0, seconds as f64)),
    };
    figure(&chart, &lines, "No failures and no dropped arrivals.")
}

// ---------------------------------------------------------------------------------------------
// Overlays: the same curves of several runs, one colour per run (variants, compare).

fn overlay_charts(runs: &[RunData]) -> Result<Markup, ReportError> {
    let all: Vec<&RunData> = runs.iter().collect();
    let range = seconds_range(&all);
    let per_run = |f: &dyn Fn(&RunData) -> Vec<(f64, f64)>| -> Vec<Line> {
        runs.iter()
            .enumerate()
            .map(|(i, r)| Line::new(r.label.clone(), palette(i), f(r)))
            .collect()
    };
    let throughput = figure(
        &Chart {
            id: "chart-overlay-throughput".into(),
            title: "Provisioned per second",
            y_desc: "devices per second",
            size: WIDE,
            x_axis: XAxis::Seconds,
            x_range: Some(range),
        },
        &per_run(&|r| r.timeseries.rate("completed")),
        "No interval was recorded.",
    )?;
    let p99 = figure(
        &Chart {
            id: "chart-overlay-p99".into(),
            title: "total: p99 latency over time",
            y_desc: "latency from intended start (ms)",
            size: WIDE,
            x_axis: XAxis::Seconds,
            x_range: Some(range),
        },
        &per_run(&|r| r.timeseries.latency("total_p99_ms")),
        "No device finished.",
    )?;
    let lines = per_run(&|r| {
        r.histograms
            .get("total")
            .map(nines_points)
            .unwrap_or_default()
    });
    let distribution = figure(
        &Chart {
            id: "chart-overlay-percentiles".into(),
            title: "total: latency by percentile (whole run)",
            y_desc: "latency from intended start (ms)",
            size: WIDE,
            x_axis: XAxis::Nines,
            x_range: Some(nines_range(&lines)),
        },
        &lines,
        "No device finished.",
    )?;
    Ok(html! { (throughput) (p99) (distribution) })
}

// ---------------------------------------------------------------------------------------------
// Pages

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

fn summary_section(s: &SummaryIn) -> Markup {
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
                @if let Some(rate) = s.sustainable_rate_per_s {
                    (card("sustainable rate", format!("{rate:.2} /s")))
                }
            }
            @if s.interrupted {
                p.note { "The run was interrupted: arrivals stopped early and in-flight devices were drained." }
            }
        }
    }
}

fn thresholds_section(s: &SummaryIn) -> Markup {
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

fn stages_section(s: &SummaryIn) -> Markup {
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

fn failures_section(s: &SummaryIn, chart: Markup) -> Markup {
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

fn throttle_section(s: &SummaryIn) -> Markup {
    // One level is the whole run: the summary above says it all.
    let Some(th) = s.throttle.as_ref().filter(|th| th.levels.len() > 1) else {
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

fn scenario_section(run: &RunData) -> Markup {
    html! {
        section #scenario {
            h2 { "Scenario as run" }
            @match &run.scenario {
                Some(text) => pre { (text) },
                None => p.note { "No scenario.toml in this run folder (written by fleetstorm since version 0.1 of the report)." },
            }
        }
    }
}

/// The page of one run.
pub fn render_run(run: &RunData, failures: &[(f64, String)]) -> Result<String, ReportError> {
    let s = &run.summary;
    let title = match &s.variant {
        Some(v) => format!("fleetstorm: {} / {v}", s.scenario),
        None => format!("fleetstorm: {}", s.scenario),
    };
    let subtitle = format!(
        "started {} · against {} · {:.1} s{}",
        s.started_at,
        s.endpoint,
        s.duration_s,
        if s.interrupted { " · interrupted" } else { "" }
    );
    let body = html! {
        (summary_section(s))
        (thresholds_section(s))
        section #throughput { h2 { "Throughput over time" } (throughput_chart(run)?) }
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
                th { "success rate" } th { "total p50 (ms)" } th { "total p99 (ms)" } th { "thresholds" }
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

fn write(path: &Path, html: &str) -> Result<PathBuf, ReportError> {
    std::fs::write(path, html).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

/// Read a run folder and write its report (`DIR/report.html`, or `out`).
pub fn write_run_report(dir: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    let run = RunData::read(dir)?;
    let failures = read_failures(&dir.join("failures.csv"))?;
    let html = render_run(&run, &failures)?;
    write(
        &out.map_or_else(|| dir.join(REPORT_FILE), Path::to_path_buf),
        &html,
    )
}

/// The variants page of `parent` (`parent/report.html`, or `out`) from its variant folders.
pub fn write_variants_report(
    parent: &Path,
    dirs: &[PathBuf],
    comparison: Option<&Comparison>,
    out: Option<&Path>,
) -> Result<PathBuf, ReportError> {
    let runs = dirs
        .iter()
        .map(|d| RunData::read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let name = runs
        .first()
        .map_or("variants", |r| r.summary.scenario.as_str());
    let html = render_overlay(
        &format!("fleetstorm: {name}, variants"),
        &runs,
        comparison,
        true,
    )?;
    write(
        &out.map_or_else(|| parent.join(REPORT_FILE), Path::to_path_buf),
        &html,
    )
}

/// `compare.html` at `path`: the runs overlaid and the comparison table.
pub fn write_compare_report(
    path: &Path,
    dirs: &[PathBuf],
    comparison: &Comparison,
) -> Result<PathBuf, ReportError> {
    let runs = dirs
        .iter()
        .map(|d| RunData::read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let html = render_overlay("fleetstorm compare", &runs, Some(comparison), false)?;
    write(path, &html)
}

/// The variant folders directly below `parent`, in the order they ran.
fn variant_dirs(parent: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let entries = std::fs::read_dir(parent).map_err(|source| ReportError::Read {
        path: parent.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let summary = path.join("summary.json");
        if summary.is_file() {
            found.push((read_summary(&summary)?.started_at, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The bootstrap seed a variants run compared with: the scenario's `seed` (1 when absent).
fn scenario_seed(run_dir: &Path) -> u64 {
    std::fs::read_to_string(run_dir.join("scenario.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("seed").and_then(toml::Value::as_integer))
        .map_or(1, |s| s as u64)
}

/// `fleetstorm report DIR`: a run folder gets its `report.html` again; a variants folder (run
/// folders below it) gets its overlay page, comparison included.
pub fn regenerate(dir: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    // A folder with any run file is a run folder: a missing summary.json is then named as such.
    let run_files = [
        "summary.json",
        "timeseries.csv",
        "latency.hlog",
        "failures.csv",
    ];
    if run_files.iter().any(|f| dir.join(f).exists()) {
        return write_run_report(dir, out);
    }
    if !dir.is_dir() {
        return Err(ReportError::Read {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        });
    }
    let dirs = variant_dirs(dir)?;
    if dirs.is_empty() {
        return Err(ReportError::NotARun {
            path: dir.to_path_buf(),
        });
    }
    let comparison = if dirs.len() > 1 {
        Some(compare::compare(&dirs, scenario_seed(&dirs[0]))?)
    } else {
        None
    };
    write_variants_report(dir, &dirs, comparison.as_ref(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_are_labelled_as_percentiles() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(4.0), "99.99%");
    }

    #[test]
    fn nines_points_end_at_the_maximum() {
        let mut h = crate::metrics::histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let points = nines_points(&h);
        let last = points.last().unwrap();
        assert!((last.0 - 3.0).abs() < 1e-9, "{last:?}");
        assert!((last.1 - h.max() as f64 / 1000.0).abs() < 1e-9);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
    }

    #[test]
    fn gaps_split_a_line_into_segments() {
        let line = Line::new(
            "x",
            BLUE,
            vec![(1.0, 1.0), (2.0, f64::NAN), (3.0, 3.0), (4.0, 4.0)],
        );
        assert_eq!(
            line.segments(),
            vec![vec![(1.0, 1.0)], vec![(3.0, 3.0), (4.0, 4.0)]]
        );
    }

    #[test]
    fn timeseries_columns_are_read_by_name_and_a_target_rate_is_drawn_dashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeseries.csv");
        std::fs::write(
            &path,
            "elapsed_s,completed,offered,started,failed,target_rate_per_s\n\
             1.0,5,10,10,0,10\n2.0,x8,10,10,1,12\n",
        )
        .unwrap();
        let err = Timeseries::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 3: column `completed`"), "{err}");
        std::fs::write(
            &path,
            "elapsed_s,completed,note,offered,started,failed,target_rate_per_s\n\
             1.0,5,warm-up,10,10,0,10\n2.0,8,,10,10,1,12\n2.2,1,,0,0,0,\n",
        )
        .unwrap();
        let ts = Timeseries::read(&path).unwrap();
        assert_eq!(ts.rate("completed"), vec![(1.0, 5.0), (2.0, 8.0)]);
        let svg = draw(
            &Chart {
                id: "t".into(),
                title: "t",
                y_desc: "y",
                size: WIDE,
                x_axis: XAxis::Seconds,
                x_range: None,
            },
            &[Line::new("target", INK, ts.points("target_rate_per_s")).dashed()],
        )
        .unwrap()
        .unwrap();
        // A dashed line is drawn as many short strokes.
        assert!(svg.matches("<polyline").count() > 5, "{svg}");
    }

    #[test]
    fn a_missing_required_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeseries.csv");
        std::fs::write(&path, "elapsed_s,offered\n1.0,5\n").unwrap();
        let err = Timeseries::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("timeseries.csv") && err.contains("no `started` column"),
            "{err}"
        );
    }
}
