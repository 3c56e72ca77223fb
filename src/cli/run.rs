//! `fleetstorm run`: the shard and the remote-run guard, then each variant in turn with its
//! dashboard, results folder, report and metrics.

use super::*;

fn parse_endpoint(s: &str) -> Result<(String, Option<u16>), CommandFailure> {
    crate::guard::parse_endpoint(s).map_err(CommandFailure::usage)
}

pub(super) async fn run_scenario(args: RunArgs) -> Result<u8, CommandFailure> {
    let shard = match (args.shard, args.shards) {
        (None, Some(n)) => {
            let index = std::env::var_os(crate::shard::INDEX_VAR);
            let index = index.as_ref().map(|v| v.to_string_lossy());
            Some(
                crate::shard::Shard::from_index_var(n, index.as_deref())
                    .map_err(CommandFailure::usage)?,
            )
        }
        (shard, _) => shard,
    };
    if let Some(at) = args.start_at {
        at.check_ahead(std::time::SystemTime::now(), args.wait_long)
            .map_err(CommandFailure::usage)?;
    }
    let scenarios = Scenario::load_variants(&args.scenario, &args.sets)?;
    if let Some(s) = shard {
        let flag = match args.shards {
            Some(n) => format!("--shards {n}"),
            None => format!("--shard {}/{}", s.index, s.count),
        };
        crate::shard::check_devices(s.count, &flag, &scenarios).map_err(CommandFailure::usage)?;
    }
    let name = scenarios
        .first()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let seed = scenarios.first().map_or(1, |s| s.seed);
    let endpoint = args.endpoint.as_deref().map(parse_endpoint).transpose()?;
    match crate::guard::check(
        &scenarios,
        endpoint.as_ref(),
        args.yes,
        shard.unwrap_or_default(),
    ) {
        crate::guard::Decision::Local => {}
        crate::guard::Decision::Confirmed(plan) => eprint!("{}", plan.render()),
        crate::guard::Decision::Refused(plan) => {
            eprint!("{}", plan.render());
            return Err(CommandFailure::new(
                exit::NOT_CONFIRMED,
                "not confirmed: nothing was sent. Run again with --yes, or set confirm_remote = true in the scenario's [target]",
            ));
        }
    }
    if let Some(dir) = &args.save_identities {
        crate::output::check_identities_folder(dir)?;
    }
    let metrics_listener = crate::exporter::bind_optional(args.metrics_listen).await?;
    let out_dir = match &args.out {
        Some(dir) => crate::output::claim_given(dir, args.overwrite)?,
        None => {
            // Shards of one job share the start time: their folders differ only in the suffix.
            let at = args
                .start_at
                .map_or_else(std::time::SystemTime::now, |t| t.0);
            let stamp = humantime::format_rfc3339_seconds(at)
                .to_string()
                .replace(':', "");
            let suffix = shard.unwrap_or_default().folder_suffix();
            crate::output::claim_default(
                &PathBuf::from("results").join(format!("{name}-{stamp}{suffix}")),
            )?
        }
    };
    let scenario_sha256 = std::fs::read(&args.scenario).ok().map(|bytes| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    });
    let limit = crate::limits::raise_nofile();
    let run_id = crate::shard::run_id(
        args.run_id.as_deref(),
        shard,
        args.start_at,
        scenario_sha256.as_deref(),
        &scenarios,
    );
    eprintln!(
        "fleetstorm run {name} (run ID {run_id}{}): {} devices planned{}; open-file limit {limit} (about {} devices in flight); results in {}",
        shard
            .map(|s| format!(", shard {} of {}", s.index, s.count))
            .unwrap_or_default(),
        scenarios
            .first()
            .map_or(0, |s| shard.unwrap_or_default().share(s.devices.count)),
        if scenarios.len() > 1 {
            format!(" per variant, {} variants", scenarios.len())
        } else {
            String::new()
        },
        limit.saturating_sub(64) / 2,
        out_dir.display()
    );
    let metrics = metrics_listener.map(|listener| {
        let source = crate::exporter::RunMetrics::new();
        let server = listener.serve(source.registry());
        eprintln!("fleetstorm: metrics at {}", server.url());
        (source, server)
    });
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    {
        let (stop, abort) = (stop.clone(), abort.clone());
        let mut signals = crate::signals::Signals::new();
        tokio::spawn(async move {
            let signal = signals.recv().await;
            tracing::info!(
                target: crate::tui::CONSOLE,
                "{signal}: stopping arrivals, draining in-flight devices (again to abort them)"
            );
            stop.cancel();
            let signal = signals.recv().await;
            tracing::info!(
                target: crate::tui::CONSOLE,
                "{signal} again: aborting in-flight devices, writing the results"
            );
            abort.cancel();
        });
    }
    let controls = crate::live::Controls::new();
    let dashboard = if !args.no_tui && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let keys = crate::tui::StopKeys {
            stop: stop.clone(),
            abort: Some(abort.clone()),
        };
        match crate::tui::Dashboard::start(controls.clone(), keys) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("no live dashboard ({e}): printing progress lines instead");
                None
            }
        }
    } else {
        None
    };
    // While the dashboard owns the terminal, tables wait until it gives it back.
    let mut tables = Vec::new();
    let result = run_variants(
        scenarios,
        &args,
        &out_dir,
        endpoint,
        RunContext {
            run_id,
            controls,
            snapshots: dashboard.as_ref().map(|d| d.snapshots.clone()),
            stop: stop.clone(),
            abort: abort.clone(),
            scenario_sha256,
            metrics: metrics.as_ref().map(|(source, _)| source.clone()),
            tables: dashboard.is_some().then_some(&mut tables),
            shard,
            start_at: args.start_at,
        },
    )
    .await;
    if let Some(d) = dashboard {
        d.finish().await;
    }
    for t in tables {
        out!("{t}");
    }
    let (all_ok, dirs, variants) = result?;
    if variants && !dirs.is_empty() {
        let runs = crate::results::read_runs(&dirs);
        let comparison = if dirs.len() > 1 {
            let runs = runs
                .as_ref()
                .map_err(|e| CommandFailure::new(e.code(), e))?;
            let comparison = crate::compare::compare_runs(runs, seed)?;
            out!("{}", comparison.render_table());
            let csv = out_dir.join("compare.csv");
            comparison.write_csv(&csv)?;
            out!("  comparison: {}", csv.display());
            Some(comparison)
        } else {
            None
        };
        out!(
            "{}",
            report_after_run(
                "variants report",
                runs.map_err(Into::into).and_then(|runs| {
                    crate::report::write_variants_report(&out_dir, runs, comparison.as_ref(), None)
                }),
            )
        );
    }
    let code = if stop.is_cancelled() {
        exit::INTERRUPTED
    } else if all_ok {
        exit::OK
    } else {
        exit::THRESHOLDS
    };
    if let Some((_, server)) = metrics {
        // The first signal after a completed run ends the linger, the second after a stop.
        let signal = if stop.is_cancelled() { &abort } else { &stop };
        crate::exporter::linger(server, args.metrics_linger, signal).await;
    }
    Ok(code)
}

/// What the variants of one `run` share.
struct RunContext<'a> {
    run_id: String,
    controls: Arc<crate::live::Controls>,
    snapshots: Option<tokio::sync::watch::Sender<Arc<crate::live::Snapshot>>>,
    stop: CancellationToken,
    /// A second signal: abort the drain.
    abort: CancellationToken,
    /// SHA-256 (hex) of the scenario file.
    scenario_sha256: Option<String>,
    /// `--metrics-listen`: the endpoint's source each variant's series attach to.
    metrics: Option<crate::exporter::RunMetrics>,
    /// Collect the end-of-run tables here instead of printing them (dashboard on screen).
    tables: Option<&'a mut Vec<String>>,
    /// `--shard` / `--shards`: every variant runs this shard's devices.
    shard: Option<crate::shard::Shard>,
    /// `--start-at`: when the first variant starts (the next ones follow it).
    start_at: Option<crate::shard::StartAt>,
}

/// Run each variant in turn; (thresholds all passed, result folders, several variants).
async fn run_variants(
    scenarios: Vec<Plan>,
    args: &RunArgs,
    out_dir: &Path,
    endpoint: Option<(String, Option<u16>)>,
    mut ctx: RunContext<'_>,
) -> Result<(bool, Vec<PathBuf>, bool), CommandFailure> {
    let stop = ctx.stop.clone();
    let mut all_ok = true;
    let mut dirs = Vec::new();
    let variants = scenarios.len() > 1;
    for scenario in scenarios {
        if stop.is_cancelled() {
            break;
        }
        let dir = match (&scenario.variant, variants) {
            (Some(v), true) => out_dir.join(v),
            _ => out_dir.to_path_buf(),
        };
        if let Some(v) = &scenario.variant {
            tracing::info!(
                target: crate::tui::CONSOLE,
                "variant {v}: results in {}",
                dir.display()
            );
        }
        let options = RunOptions {
            progress: ctx.snapshots.is_none(),
            controls: ctx.controls.clone(),
            snapshots: ctx.snapshots.clone(),
            endpoint: endpoint.clone(),
            drain: args.drain,
            // Variants of one run share the seed (so thing names): each saves in its own folder.
            save_identities: args
                .save_identities
                .as_ref()
                .map(|d| match &scenario.variant {
                    Some(v) if variants => d.join(v),
                    _ => d.clone(),
                }),
            run_id: ctx.run_id.clone(),
            abort: ctx.abort.clone(),
            scenario_sha256: ctx.scenario_sha256.clone(),
            metrics: ctx.metrics.clone(),
            shard: ctx.shard,
            start_at: ctx.start_at.take(),
            ..RunOptions::new(dir.clone())
        };
        let summary = fleet::run(scenario, options, stop.clone()).await?;
        let mut table = crate::output::render_table(&summary);
        table.push_str(&report_after_run(
            "report",
            crate::report::write_run_report(&dir, None),
        ));
        #[cfg(feature = "aws")]
        if args.cloudwatch {
            table.push_str(&cloudwatch_after_run(&dir, &summary.endpoint).await);
        }
        match ctx.tables.as_mut() {
            Some(tables) => tables.push(table),
            None => out!("{table}"),
        }
        all_ok &= summary.thresholds_ok();
        dirs.push(dir);
    }
    Ok((all_ok, dirs, variants))
}

/// `run --cloudwatch`: AWS's own metrics of the run's window into `cloudwatch.csv` and the
/// report, as `fleetstorm aws metrics` reads them (the SDK's credential chain; the Region of the
/// endpoint's host name, else the environment's or the profile's).
#[cfg(feature = "aws")]
async fn cloudwatch_after_run(dir: &Path, endpoint: &str) -> String {
    let host =
        crate::guard::parse_endpoint(endpoint).map_or_else(|_| endpoint.to_string(), |(h, _)| h);
    let opts = crate::aws::metrics::MetricsOptions {
        conn: crate::aws::Connection {
            region: crate::guard::aws_region(&host),
            ..Default::default()
        },
        run_dir: dir.to_path_buf(),
        template: None,
        claim_certificate_id: None,
        dry_run: false,
    };
    match crate::aws::metrics::metrics(&opts).await {
        Ok(report) => report
            .lines
            .iter()
            .map(|l| format!("\n  cloudwatch: {l}"))
            .collect(),
        Err(e) => format!("\n  cloudwatch: {e}"),
    }
}
