//! `fleetstorm mock`: the mock endpoint as a server, until a signal.

use super::*;

/// Whether the control plane may listen on `control` and the metrics endpoint on `metrics`:
/// loopback always; another address only with credentials, or knowingly with
/// `--insecure-control` (`Ok(Some(warning))`). `Err`: the refusal's message (exit 2).
pub(super) fn exposure(
    control: SocketAddr,
    metrics: Option<SocketAddr>,
    credentials: bool,
    insecure: bool,
) -> Result<Option<String>, String> {
    let exposed: Vec<String> = [("--control", Some(control)), ("--metrics-listen", metrics)]
        .into_iter()
        .filter_map(|(flag, addr)| addr.map(|a| (flag, a)))
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(flag, a)| format!("{flag} {a}"))
        .collect();
    if exposed.is_empty() || credentials {
        return Ok(None);
    }
    let what = exposed.join(" and ");
    if insecure {
        return Ok(Some(format!(
            "warning: {what} is not loopback and the control plane checks no signature (--insecure-control): anyone who reaches it can create certificates signed by the mock's CA"
        )));
    }
    Err(format!(
        "{what}: not a loopback address, and without --credentials anyone who reaches it could create certificates signed by the mock's CA, attach policies and register things; give --credentials FILE (an AWS shared credentials file whose keys clients sign with), listen on 127.0.0.1, or add --insecure-control to accept it knowingly"
    ))
}

pub(super) async fn run_mock(args: MockArgs) -> Result<u8, CommandFailure> {
    // Before anything is read or bound.
    let credentials = args
        .credentials
        .as_deref()
        .map(mock::control::auth::Credentials::from_file)
        .transpose()
        .map_err(|m| CommandFailure::new(exit::CONFIG, format!("--credentials {m}")))?;
    match exposure(
        args.control,
        args.metrics_listen,
        credentials.is_some(),
        args.insecure_control,
    ) {
        Ok(None) => {}
        Ok(Some(warning)) => eprintln!("{warning}"),
        Err(message) => return Err(CommandFailure::usage(message)),
    }
    let mut settings = match &args.config {
        Some(path) => MockSettings::from_file(path)?,
        None => MockSettings::default(),
    };
    settings.templates.extend(args.templates.iter().cloned());
    if let Some(keys) = args.keys {
        settings.keys = keys;
    }
    let (pki, created) = Pki::init(&args.pki, &[], KeyAlgorithm::P256)?;
    if created {
        eprintln!("created PKI in {}", args.pki.display());
    }
    let mut config = MockConfig::new(Arc::new(pki), settings)?;
    if args.empty {
        config = config.empty();
    }
    config.write_registry = true;
    config.control = Some(args.control);
    config.credentials = credentials.map(Arc::new);
    let metrics = crate::exporter::bind_optional(args.metrics_listen).await?;
    let listener = crate::mock::listen(args.listen)?;
    let shutdown = CancellationToken::new();
    let key_type = config.settings.keys;
    let limits = config.settings.http;
    let handle = mock::start(config, listener, shutdown.clone()).await?;
    let templates = handle.template_names();
    let metrics =
        metrics.map(|l| l.serve_with(crate::exporter::mock::registry(handle.observer()), limits));
    let control = handle
        .control_addr
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    let preloaded = handle.preloaded();
    match &preloaded.claim_certificate {
        Some(claim_id) => {
            out!(
                "fleetstorm mock listening on {} control http://{control} (ca {}, claim {} {})",
                handle.addr,
                handle.root_ca_path.display(),
                handle.claim_cert_path.display(),
                handle.claim_key_path.display()
            );
            out!(
                "  preloaded: template {}; policy {} attached to the claim certificate {claim_id} (ACTIVE); --empty starts without them",
                preloaded.templates.join(", "),
                preloaded.policies.join(", ")
            );
        }
        None => {
            out!(
                "fleetstorm mock listening on {} control http://{control} (ca {}; empty account: no policy, no claim certificate)",
                handle.addr,
                handle.root_ca_path.display()
            );
            let counts = handle.registry().counts();
            if counts.things + counts.certificates + counts.policies > 0 {
                out!(
                    "  {} brought back {} things, {} certificates, {} policies from earlier runs (a new --pki directory starts with none)",
                    args.pki
                        .join(crate::mock::registry::journal::LOG_FILE)
                        .display(),
                    counts.things,
                    counts.certificates,
                    counts.policies
                );
            }
        }
    }
    out!(
        "  templates: {}; keys: {} ({} pooled)",
        if templates.is_empty() {
            "none".to_string()
        } else {
            templates.join(", ")
        },
        key_type.as_str(),
        handle.key_pool().pooled
    );
    if let Some(server) = &metrics {
        out!("  metrics: {}", server.url());
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let signal = crate::signals::shutdown_signal().await;
    eprintln!("{signal}: stopping");
    let report = handle.stop().await;
    drop(metrics);
    let s = &report.stats;
    out!(
        "fleetstorm mock stopped: {} connections ({} TLS failures, {} refused, {} policy disconnects, {} protocol errors, {} takeovers)",
        s.connections,
        s.tls_failures,
        s.connack_refused,
        s.policy_disconnects,
        s.protocol_errors,
        s.takeovers
    );
    out!(
        "  CreateKeysAndCertificate {}/{} rejected, CreateCertificateFromCsr {}/{} rejected, RegisterThing {}/{} rejected",
        s.create_keys_accepted,
        s.create_keys_rejected,
        s.create_from_csr_accepted,
        s.create_from_csr_rejected,
        s.register_thing_accepted,
        s.register_thing_rejected
    );
    for (template, h) in &report.hooks {
        out!(
            "  hook {template}: {} invocations, {} allowed, {} denied, {} errors, {} malformed, {} timeouts, {} cold starts",
            h.invocations,
            h.allowed,
            h.denied,
            h.errors,
            h.malformed,
            h.timeouts,
            h.cold_starts
        );
    }
    out!(
        "  keys: {} ({} from pool, {} generated inline, {} generated in the background in {:.1} s CPU, {} cached for next start)",
        report.key_type,
        report.keys.served_from_pool,
        report.keys.generated_inline,
        report.keys.generated_background,
        report.keys.background_cpu_s,
        report.cached_keys
    );
    out!(
        "  registry: {} things, {} certificates ({} active, {} pending){}",
        report.registry.things,
        report.registry.certificates,
        report.registry.active_certificates,
        report.registry.pending_certificates,
        report
            .registry_file
            .as_ref()
            .map(|p| format!(", written to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_non_loopback_control_plane_needs_credentials_or_insecure_control() {
        let lo = addr("127.0.0.1:0");
        let any = addr("0.0.0.0:8443");
        assert_eq!(exposure(lo, None, false, false), Ok(None));
        assert_eq!(exposure(addr("[::1]:0"), Some(lo), false, false), Ok(None));
        let refused = exposure(any, None, false, false).unwrap_err();
        assert!(
            refused.starts_with("--control 0.0.0.0:8443: not a loopback address"),
            "{refused}"
        );
        assert!(refused.contains("--credentials FILE") && refused.contains("--insecure-control"));
        let refused = exposure(lo, Some(addr("10.0.0.5:9464")), false, false).unwrap_err();
        assert!(
            refused.starts_with("--metrics-listen 10.0.0.5:9464:"),
            "{refused}"
        );
        assert_eq!(exposure(any, Some(any), true, false), Ok(None));
        let warning = exposure(any, None, false, true).unwrap().unwrap();
        assert!(
            warning.starts_with("warning: --control 0.0.0.0:8443 is not loopback"),
            "{warning}"
        );
    }
}
