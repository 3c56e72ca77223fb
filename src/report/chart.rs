//! The charts: plotters draws each into an SVG string (`SVGBackend::with_string`), embedded in a
//! `<figure>`; the legend has its own column so that it never hides data.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use maud::{Markup, PreEscaped, html};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::ReportError;
use super::input::{RunData, stages_of};

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

pub(super) fn palette(i: usize) -> RGBColor {
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

pub(super) fn throughput_chart(run: &RunData) -> Result<Markup, ReportError> {
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

pub(super) fn latency_charts(run: &RunData) -> Result<Markup, ReportError> {
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

pub(super) fn distribution_chart(run: &RunData) -> Result<Markup, ReportError> {
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

pub(super) fn failures_chart(
    run: &RunData,
    failures: &[(f64, String)],
) -> Result<Markup, ReportError> {
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

// Overlays: the same curves of several runs, one colour per run (variants, compare).

pub(super) fn overlay_charts(runs: &[RunData]) -> Result<Markup, ReportError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Timeseries;

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
}
