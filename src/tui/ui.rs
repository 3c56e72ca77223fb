//! Pure rendering: draws an `App` and nothing else (tested with `TestBackend`).

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row,
    Table, Wrap,
};

use super::App;
use super::app::Point;
use super::log::last_log;
use crate::live::Snapshot;
use crate::metrics::Percentiles;

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Draw the dashboard.
pub fn render(frame: &mut Frame, app: &App) {
    let [header, middle, stages, bottom, footer] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(8),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(frame, header, app);
    let [chart, failures] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(middle);
    render_rates(frame, chart, app);
    render_failures(frame, failures, app);
    render_stages(frame, stages, app);
    render_percentiles(frame, bottom, app);
    render_footer(frame, footer, app);
    if app.help {
        render_help(frame);
    }
}

fn render_header(frame: &mut Frame, area: Rect, app: &App) {
    let s = &app.snapshot;
    let shard = s
        .shard
        .map(|sh| format!(" [shard {} of {}]", sh.index, sh.count))
        .unwrap_or_default();
    let title = match &s.variant {
        Some(v) => format!(
            " fleetstorm: {}{shard} [variant {v}] against {} ",
            s.scenario, s.endpoint
        ),
        None => format!(" fleetstorm: {}{shard} against {} ", s.scenario, s.endpoint),
    };
    let block = Block::bordered().title(title.bold());
    if s.scenario.is_empty() {
        frame.render_widget(
            Paragraph::new("starting: waiting for the first interval ...").block(block),
            area,
        );
        return;
    }
    let state = if s.finished {
        Span::styled("FINISHED", Style::new().fg(Color::Green).bold())
    } else if s.stopping || app.stop_requested {
        Span::styled(
            format!("STOPPING (draining {} in flight)", s.in_flight),
            Style::new().fg(Color::Yellow).bold(),
        )
    } else if s.rate.paused {
        Span::styled("PAUSED", Style::new().fg(Color::Yellow).bold())
    } else {
        Span::styled("RUNNING", Style::new().fg(Color::Green).bold())
    };
    let target = s
        .target_rate
        .map_or("-".to_string(), |r| format!("{r:.1}/s"));
    let lag = if s.lag_interval >= Duration::from_millis(100) {
        Span::styled(
            format!(
                "  scheduler behind: start lag {} ms",
                ms(s.lag_interval.as_secs_f64() * 1000.0)
            ),
            Style::new().fg(Color::Red).bold(),
        )
    } else {
        Span::raw(format!(
            "  start lag max {} ms",
            ms(s.lag_max.as_secs_f64() * 1000.0)
        ))
    };
    let lines = vec![
        Line::from(vec![
            state,
            Span::raw(format!(
                "  phase {}  elapsed {} / planned {} (schedule {})  target {target}  rate x{:.1}",
                s.phase,
                clock(s.elapsed),
                clock(s.planned),
                clock(s.schedule_elapsed),
                s.rate.multiplier,
            )),
        ]),
        Line::from(vec![
            Span::raw(format!(
                "devices planned {}  started {}  ",
                s.planned_devices, s.started
            )),
            Span::styled(
                format!("provisioned {}", s.provisioned),
                Style::new().fg(Color::Green),
            ),
            Span::raw("  "),
            Span::styled(
                format!("failed {}", s.failed),
                Style::new().fg(if s.failed > 0 {
                    Color::Red
                } else {
                    Color::Reset
                }),
            ),
            Span::raw(format!(
                "  in flight {}  connected {}  dropped {}",
                s.in_flight, s.connected, s.dropped
            )),
        ]),
        Line::from(vec![cpu_span(s), lag, amplification_span(s)]),
    ];
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The amplification figures so far; the connect rate red above AWS's 1/s per client ID.
fn amplification_span(s: &Snapshot) -> Span<'static> {
    let per = if s.provisioned == 0 {
        String::new()
    } else {
        format!(
            " ({:.2}/provisioned)",
            s.certificates_issued as f64 / s.provisioned as f64
        )
    };
    let text = format!(
        "  certificates {}{per}  connects {}  retries {}  max {} connects/s per client ID",
        s.certificates_issued, s.connects, s.retries, s.max_connects_per_s
    );
    if s.max_connects_per_s > 1 {
        Span::styled(text, Style::new().fg(Color::Red).bold())
    } else {
        Span::raw(text)
    }
}

/// fleetstorm's own CPU; red when it is near all the cores it has, where latencies start to
/// include the harness's queueing rather than the endpoint's.
fn cpu_span(s: &Snapshot) -> Span<'static> {
    let all = 100.0 * s.cores.max(1) as f64;
    let text = format!("cpu {:.0} % of {} cores", s.cpu_percent, s.cores.max(1));
    if s.cpu_percent >= 0.9 * all {
        Span::styled(
            format!("{text}: harness saturated"),
            Style::new().fg(Color::Red).bold(),
        )
    } else {
        Span::raw(text)
    }
}

/// One line of the rate chart.
fn series<'a>(name: &'static str, color: Color, data: &'a [(f64, f64)]) -> Dataset<'a> {
    Dataset::default()
        .name(name)
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(color))
        .data(data)
}

fn render_rates(frame: &mut Frame, area: Rect, app: &App) {
    let pts = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        app.history
            .iter()
            .filter_map(|p| f(p).map(|v| (p.t, v)))
            .collect()
    };
    let offered = pts(|p| Some(p.offered));
    let provisioned = pts(|p| Some(p.provisioned));
    let failed = pts(|p| Some(p.failed));
    let target = pts(|p| p.target);
    let (t0, t1) = match (app.history.front(), app.history.back()) {
        (Some(a), Some(b)) => (a.t.floor(), b.t.ceil().max(a.t.floor() + 10.0)),
        _ => (0.0, 10.0),
    };
    let top = [&offered, &provisioned, &failed, &target]
        .iter()
        .flat_map(|v| v.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut datasets = vec![
        series("offered/s", Color::Cyan, &offered),
        series("provisioned/s", Color::Green, &provisioned),
        series("failed/s", Color::Red, &failed),
    ];
    if !target.is_empty() {
        datasets.push(
            series("target/s", Color::DarkGray, &target)
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter),
        );
    }
    let chart = Chart::new(datasets)
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
        .block(Block::bordered().title(" arrivals and completions per second "))
        .x_axis(
            Axis::default()
                .title("s")
                .bounds([t0, t1])
                .labels([format!("{t0:.0}"), format!("{t1:.0}")]),
        )
        .y_axis(Axis::default().bounds([0.0, top]).labels([
            "0".to_string(),
            format!("{:.0}", top / 2.0),
            format!("{top:.0}"),
        ]));
    frame.render_widget(chart, area);
}

fn render_failures(frame: &mut Frame, area: Rect, app: &App) {
    let block = Block::bordered().title(" failures: count, reason, latest message ");
    let lines: Vec<Line> = app
        .snapshot
        .failures
        .iter()
        .flat_map(|f| {
            [
                Line::from(vec![
                    Span::styled(format!("{:>7} ", f.count), Style::new().fg(Color::Red)),
                    Span::styled(f.reason.clone(), Style::new().bold()),
                ]),
                Line::styled(
                    format!("        {}", f.latest),
                    Style::new().fg(Color::DarkGray),
                ),
            ]
        })
        .collect();
    let body = if lines.is_empty() {
        Paragraph::new("none")
    } else {
        Paragraph::new(lines).wrap(Wrap { trim: false })
    };
    frame.render_widget(body.block(block), area);
}

fn stats(p: &Percentiles) -> [String; 6] {
    if p.count == 0 {
        return std::array::from_fn(|i| if i == 0 { "0" } else { "-" }.to_string());
    }
    [
        p.count.to_string(),
        ms(p.p50_ms),
        ms(p.p90_ms),
        ms(p.p99_ms),
        ms(p.p999_ms),
        ms(p.max_ms),
    ]
}

fn render_stages(frame: &mut Frame, area: Rect, app: &App) {
    let header = Row::new(
        [
            "stage",
            "n/s",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "│ total",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
        ]
        .map(|h| Cell::from(h).style(Style::new().add_modifier(Modifier::BOLD))),
    );
    let rows: Vec<Row> = app
        .snapshot
        .stages
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let mut cells = vec![st.name.to_string()];
            cells.extend(stats(&st.interval));
            let mut total = stats(&st.total);
            total[0] = format!("│ {}", total[0]);
            cells.extend(total);
            let row = Row::new(cells);
            if i == app.selected {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let widths = [Constraint::Length(19)]
        .into_iter()
        .chain([Constraint::Length(7); 6])
        .chain([Constraint::Length(9)])
        .chain([Constraint::Length(7); 5]);
    let table = Table::new(rows, widths).header(header).block(
        Block::bordered()
            .title(" latency from intended start (ms): last interval │ cumulative ".to_string()),
    );
    frame.render_widget(table, area);
}

fn render_percentiles(frame: &mut Frame, area: Rect, app: &App) {
    let Some(st) = app.snapshot.stages.get(app.selected) else {
        frame.render_widget(Block::bordered().title(" percentiles "), area);
        return;
    };
    let title = format!(
        " {} latency by percentile, cumulative (ms; arrows/tab select the stage) ",
        st.name
    );
    let block = Block::bordered().title(title);
    if st.curve.is_empty() {
        frame.render_widget(Paragraph::new("no data yet").block(block), area);
        return;
    }
    let bars: Vec<Bar> = st
        .curve
        .iter()
        .map(|(p, v)| {
            Bar::default()
                .value((v * 1000.0).round() as u64)
                .text_value(ms(*v))
                .label(Line::from(format!("p{p}")))
        })
        .chain(std::iter::once(
            Bar::default()
                .value((st.total.max_ms * 1000.0).round() as u64)
                .text_value(ms(st.total.max_ms))
                .label(Line::from("max")),
        ))
        .collect();
    let chart = BarChart::default()
        .block(block)
        .data(BarGroup::default().bars(&bars))
        .bar_width(8)
        .bar_gap(2)
        .bar_style(Style::new().fg(Color::Cyan))
        .value_style(Style::new().fg(Color::Black).bg(Color::Cyan));
    frame.render_widget(chart, area);
}

fn render_footer(frame: &mut Frame, area: Rect, app: &App) {
    let log = last_log().unwrap_or_default();
    let keys = if app.stop_requested {
        " stopping: waiting for in-flight devices ".to_string()
    } else {
        " q stop  p pause  +/- rate  ←/→ stage  ? help ".to_string()
    };
    let line = Line::from(vec![
        Span::styled(keys, Style::new().fg(Color::Black).bg(Color::Gray)),
        Span::raw(" "),
        Span::styled(log, Style::new().fg(Color::DarkGray)),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn render_help(frame: &mut Frame) {
    let area = frame.area();
    let w = 64.min(area.width);
    let h = 14.min(area.height);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let text = vec![
        Line::from("q, Ctrl-C   stop: no new arrivals, drain in-flight devices,"),
        Line::from("            write every result file, then exit;"),
        Line::from("            again: abort the drain (devices: aborted)"),
        Line::from("p, space    pause / resume arrivals (schedule time stops)"),
        Line::from("+ / -       arrival-rate multiplier up / down by 0.1"),
        Line::from("            (recorded in timeseries.csv and summary.json)"),
        Line::from("←/→ ↑/↓ tab select the stage of the percentile view"),
        Line::from("?           this help (Esc closes)"),
        Line::from(""),
        Line::from("Latency is measured from each device's intended start, so a"),
        Line::from("harness that falls behind shows up in it (and in start lag)."),
    ];
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" keys ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{CURVE, FailureView, Rate, StageView};
    use crate::tui::Action;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use std::sync::Arc;

    fn text(terminal: &Terminal<TestBackend>) -> String {
        let buf = terminal.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn percentiles(base: f64, count: u64) -> Percentiles {
        Percentiles {
            count,
            mean_ms: base,
            p50_ms: base,
            p90_ms: base * 2.0,
            p99_ms: base * 3.0,
            p999_ms: base * 4.0,
            max_ms: base * 5.0,
        }
    }

    fn snapshot(elapsed_s: u64, provisioned: u64) -> Snapshot {
        Snapshot {
            scenario: "quickstart".into(),
            endpoint: "embedded mock 127.0.0.1:4242".into(),
            elapsed: Duration::from_secs(elapsed_s),
            schedule_elapsed: Duration::from_secs(elapsed_s),
            planned: Duration::from_secs(60),
            phase: "1/2 constant-arrival-rate".into(),
            target_rate: Some(25.0),
            rate: Rate::default(),
            planned_devices: 1500,
            started: provisioned + 7,
            provisioned,
            failed: 3,
            in_flight: 4,
            interval: Duration::from_secs(1),
            interval_offered: 25,
            interval_provisioned: 24,
            interval_failed: 1,
            stages: crate::metrics::STAGE_NAMES
                .iter()
                .enumerate()
                .map(|(i, name)| StageView {
                    name,
                    interval: percentiles(10.0 + i as f64, 24),
                    total: percentiles(20.0 + i as f64, provisioned),
                    curve: CURVE.iter().map(|p| (*p, 1.0 + p / 10.0)).collect(),
                })
                .collect(),
            failures: vec![FailureView {
                reason: "rejected.register_thing".into(),
                count: 3,
                latest: "ThrottlingException: rate exceeded".into(),
            }],
            certificates_issued: provisioned * 2,
            connects: provisioned * 3,
            retries: provisioned,
            max_connects_per_s: 1,
            ..Snapshot::default()
        }
    }

    fn draw(app: &App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(150, 45)).unwrap();
        terminal.draw(|f| render(f, app)).unwrap();
        text(&terminal)
    }

    fn press(app: &mut App, code: KeyCode) -> Option<Action> {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn a_shards_dashboard_names_its_shard() {
        let mut app = App::default();
        let s = Snapshot {
            shard: Some(crate::shard::Shard { index: 2, count: 4 }),
            ..snapshot(1, 10)
        };
        app.update(Arc::new(s));
        let screen = draw(&app);
        assert!(
            screen.contains("fleetstorm: quickstart [shard 2 of 4] against"),
            "{screen}"
        );
    }

    #[test]
    fn the_dashboard_shows_counts_stages_percentiles_and_failures() {
        let mut app = App::default();
        for t in 1..=5 {
            app.update(Arc::new(snapshot(t, 10 * t)));
        }
        let screen = draw(&app);
        for expected in [
            "fleetstorm: quickstart",
            "RUNNING",
            "phase 1/2 constant-arrival-rate",
            "elapsed 0:00:05 / planned 0:01:00",
            "target 25.0/s",
            "provisioned 50",
            "failed 3",
            "in flight 4",
            "connect_claim",
            "create_certificate",
            "register_thing",
            "total",
            "p99.9",
            "rejected.register_thing",
            "ThrottlingException: rate exceeded",
            "offered/s",
            "provisioned/s",
            "certificates 100 (2.00/provisioned)  connects 150  retries 50",
            "max 1 connects/s per client ID",
        ] {
            assert!(
                screen.contains(expected),
                "missing {expected:?} in\n{screen}"
            );
        }
        // register_thing (index 3): interval p99 = 3 * 13 = 39.0, cumulative p99 = 3 * 23 = 69.0.
        let row = screen
            .lines()
            .find(|l| l.contains("│register_thing "))
            .unwrap();
        assert!(row.contains("39.0") && row.contains("69.0"), "{row}");
        // The percentile view starts on the first stage.
        assert!(
            screen.contains("connect_claim latency by percentile"),
            "{screen}"
        );
        assert!(screen.contains("p99.99"), "{screen}");
    }

    #[test]
    fn keys_select_stages_toggle_help_and_map_to_run_actions() {
        let mut app = App::default();
        app.update(Arc::new(snapshot(1, 10)));
        assert_eq!(press(&mut app, KeyCode::Right), None);
        assert_eq!(press(&mut app, KeyCode::Tab), None);
        assert_eq!(app.selected, 2);
        assert!(draw(&app).contains("create_certificate latency by percentile"));
        assert_eq!(press(&mut app, KeyCode::Left), None);
        assert_eq!(press(&mut app, KeyCode::Left), None);
        assert_eq!(press(&mut app, KeyCode::Left), None);
        assert_eq!(app.selected, 6, "wraps around to the last stage");
        assert_eq!(press(&mut app, KeyCode::Char('?')), None);
        assert!(draw(&app).contains("pause / resume arrivals"));
        assert_eq!(press(&mut app, KeyCode::Esc), None);
        assert!(!draw(&app).contains("pause / resume arrivals"));
        assert_eq!(
            press(&mut app, KeyCode::Char('p')),
            Some(Action::TogglePause)
        );
        assert_eq!(press(&mut app, KeyCode::Char('+')), Some(Action::Faster));
        assert_eq!(press(&mut app, KeyCode::Char('-')), Some(Action::Slower));
        assert!(!app.stop_requested);
        assert_eq!(
            app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Stop)
        );
        assert!(app.stop_requested);
        assert!(draw(&app).contains("STOPPING"));
    }

    #[test]
    fn a_scheduler_falling_behind_is_shown() {
        let mut app = App::default();
        let mut s = snapshot(3, 10);
        app.update(Arc::new(s.clone()));
        assert!(!draw(&app).contains("scheduler behind"));
        s.elapsed = Duration::from_secs(4);
        s.lag_interval = Duration::from_millis(850);
        app.update(Arc::new(s));
        assert!(draw(&app).contains("scheduler behind: start lag 850 ms"));
    }

    #[test]
    fn the_harness_own_cpu_is_shown_and_flagged_when_saturated() {
        let mut app = App::default();
        let mut s = snapshot(3, 10);
        s.cores = 2;
        s.cpu_percent = 120.0;
        app.update(Arc::new(s.clone()));
        let screen = draw(&app);
        assert!(screen.contains("cpu 120 % of 2 cores"), "{screen}");
        assert!(!screen.contains("harness saturated"), "{screen}");
        s.elapsed = Duration::from_secs(4);
        s.cpu_percent = 191.0;
        app.update(Arc::new(s));
        let screen = draw(&app);
        assert!(
            screen.contains("cpu 191 % of 2 cores: harness saturated"),
            "{screen}"
        );
    }

    #[test]
    fn a_new_variant_starts_a_fresh_chart_and_paused_runs_say_so() {
        let mut app = App::default();
        for t in 1..=4 {
            app.update(Arc::new(snapshot(t, t)));
        }
        assert_eq!(app.history.len(), 4);
        let mut s = snapshot(1, 1);
        s.variant = Some("slow-hook".into());
        s.rate = Rate {
            multiplier: 1.5,
            paused: true,
        };
        app.update(Arc::new(s));
        assert_eq!(app.history.len(), 1);
        let screen = draw(&app);
        assert!(screen.contains("[variant slow-hook]"), "{screen}");
        assert!(
            screen.contains("PAUSED") && screen.contains("rate x1.5"),
            "{screen}"
        );
    }

    #[test]
    fn a_tiny_terminal_does_not_panic() {
        let mut app = App::default();
        app.update(Arc::new(snapshot(1, 10)));
        app.help = true;
        for (w, h) in [(1, 1), (20, 5), (60, 10), (0, 0)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal.draw(|f| render(f, &app)).unwrap();
        }
    }
}
