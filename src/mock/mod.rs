//! The embedded imitation of AWS IoT Core's fleet-provisioning endpoint.
//!
//! `start` takes a bound listener and a shutdown token and returns a handle with the address, the
//! trust anchor and the claim identity, so `fleetstorm run`, `fleetstorm mock` and the tests all run
//! the same server in process. Beside the MQTT listener it serves the AWS IoT control plane
//! over HTTP ([`control`]) on the same registry.

pub mod control;
pub mod faults;
#[doc(hidden)]
pub mod fuzzing;
pub mod hooks;
mod http_hook;
pub mod keypool;
mod preloaded;
mod provisioning;
pub mod quotas;
pub mod registry;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::iot::policy::{self, ArnContext, PolicyDocument};
use crate::iot::template::{self, Template};
use crate::pki::{self, Pki};
use keypool::{KeyPool, KeyPoolStats};
use registry::{CertificateStatus, Registry, RegistryCounts};

use crate::protocol::ALPN_MQTT_CA;
/// Name of the policy attached to the claim certificate.
pub const CLAIM_POLICY_NAME: &str = "fleet-provisioning_Policy";
/// Registry snapshot written at stop, under the PKI directory.
pub const REGISTRY_FILE: &str = "registry.json";

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("template {name:?} ({path}): {source}")]
    Template {
        name: String,
        path: String,
        source: template::TemplateError,
    },
    #[error("template {name:?} ({path}): policy {pointer}: {source}")]
    TemplatePolicy {
        name: String,
        path: String,
        pointer: String,
        source: policy::PolicyError,
    },
    #[error("invalid template name {0:?} (1-36 characters of [0-9A-Za-z_-])")]
    TemplateName(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("registry journal {0}")]
    Journal(#[from] registry::journal::JournalError),
    /// A listening socket (MQTT or control plane) that could not be made: a taken port.
    #[error(transparent)]
    Bind(#[from] crate::http::BindError),
}

pub use crate::mock_settings::MockSettings;
pub use preloaded::Preloaded;
pub(crate) use preloaded::PreloadedKind;

impl MockSettings {
    /// Read a TOML settings file; errors name the file, line and field.
    pub fn from_file(path: &Path) -> Result<MockSettings, MockError> {
        let text = std::fs::read_to_string(path).map_err(|e| MockError::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut settings: MockSettings = toml::from_str(&text).map_err(|e| MockError::Config {
            path: path.display().to_string(),
            message: crate::toml_error_message(&text, &e),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        settings.base_dir = base.to_path_buf();
        for file in settings.templates.values_mut() {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        Ok(settings)
    }
}

/// Everything `start` needs.
pub struct MockConfig {
    pub pki: Arc<Pki>,
    pub settings: MockSettings,
    /// Templates by name; the seed template is present as `FleetProvisioningTemplate` unless
    /// [`MockConfig::empty`] removed it.
    pub templates: BTreeMap<String, Arc<Template>>,
    /// The JSON text of each template, as DescribeProvisioningTemplate returns it.
    pub template_bodies: BTreeMap<String, String>,
    /// Write `registry.json` into the PKI directory at stop.
    pub write_registry: bool,
    /// Load the registry from the PKI directory's journal (`registry.log`) and record every
    /// change there, so a restarted mock knows what it issued. Off for a throw-away PKI.
    pub persist_registry: bool,
    /// Where the control plane (AWS IoT REST API) listens; `None`: not served. Default: an
    /// ephemeral loopback port.
    pub control: Option<SocketAddr>,
    /// Preload the ready-to-run account: the claim policy of every template, attached to the
    /// PKI's claim certificate, registered ACTIVE. Off after [`MockConfig::empty`].
    pub preload: bool,
    /// Check every control-plane request's SigV4 signature against these keys; `None`: any
    /// `Authorization` header is accepted.
    pub credentials: Option<Arc<control::auth::Credentials>>,
}

impl MockConfig {
    /// Load the templates named in `settings` (refusing invalid ones with path and JSON pointer).
    pub fn new(pki: Arc<Pki>, settings: MockSettings) -> Result<MockConfig, MockError> {
        settings
            .faults
            .validate()
            .and_then(|()| settings.http.validate())
            .map_err(|message| MockError::Config {
                path: "mock settings".into(),
                message,
            })?;
        let arn = ArnContext {
            region: settings.region.clone(),
            account: settings.account.clone(),
        };
        let mut templates = BTreeMap::new();
        let mut template_bodies = BTreeMap::new();
        template_bodies.insert(
            template::SEED_TEMPLATE_NAME.to_string(),
            template::SEED_TEMPLATE_JSON.to_string(),
        );
        let seed = load_template(
            template::SEED_TEMPLATE_NAME,
            "built-in",
            template::SEED_TEMPLATE_JSON,
            &arn,
        )?;
        templates.insert(template::SEED_TEMPLATE_NAME.to_string(), seed);
        for (name, path) in &settings.templates {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| MockError::Config {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            templates.insert(name.clone(), load_template(name, &shown, &text, &arn)?);
            template_bodies.insert(name.clone(), text);
        }
        Ok(MockConfig {
            pki,
            settings,
            templates,
            template_bodies,
            write_registry: false,
            persist_registry: true,
            control: Some((std::net::Ipv4Addr::LOCALHOST, 0).into()),
            preload: true,
            credentials: None,
        })
    }

    /// Start like a fresh AWS account (`fleetstorm mock --empty`): no built-in seed template, no
    /// policy, the PKI's claim certificate not registered. Templates the settings name are kept:
    /// they were asked for.
    pub fn empty(mut self) -> MockConfig {
        if !self
            .settings
            .templates
            .contains_key(template::SEED_TEMPLATE_NAME)
        {
            self.templates.remove(template::SEED_TEMPLATE_NAME);
            self.template_bodies.remove(template::SEED_TEMPLATE_NAME);
        }
        self.preload = false;
        self
    }
}

fn load_template(
    name: &str,
    path: &str,
    text: &str,
    _arn: &ArnContext,
) -> Result<Arc<Template>, MockError> {
    if !crate::protocol::valid_template_name(name) {
        return Err(MockError::TemplateName(name.to_string()));
    }
    let template = Template::parse(text).map_err(|source| MockError::Template {
        name: name.to_string(),
        path: path.to_string(),
        source,
    })?;
    // Inline policy documents must be valid policies; check them now rather than per request.
    for (pointer, doc) in inline_policy_documents(text) {
        PolicyDocument::parse(&doc).map_err(|source| MockError::TemplatePolicy {
            name: name.to_string(),
            path: path.to_string(),
            pointer,
            source,
        })?;
    }
    Ok(Arc::new(template))
}

/// `(JSON pointer, document)` of every inline `PolicyDocument` of an `AWS::IoT::Policy` resource.
fn inline_policy_documents(text: &str) -> Vec<(String, serde_json::Value)> {
    let Ok(body) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let Some(resources) = body.get("Resources").and_then(|r| r.as_object()) else {
        return Vec::new();
    };
    resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(|t| t.as_str()) == Some("AWS::IoT::Policy"))
        .filter_map(|(id, r)| {
            let doc = r.get("Properties")?.get("PolicyDocument")?;
            let doc = match doc {
                serde_json::Value::String(s) => serde_json::from_str(s).ok()?,
                other => other.clone(),
            };
            Some((format!("/Resources/{id}/Properties/PolicyDocument"), doc))
        })
        .collect()
}

/// Counters of everything the mock did; cheap atomics.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub tls_failures: AtomicU64,
    pub connack_refused: AtomicU64,
    pub policy_disconnects: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub takeovers: AtomicU64,
    pub throttled: [AtomicU64; 3],
    pub throttled_connects: AtomicU64,
    pub accepted: [AtomicU64; 3],
    pub rejected: [AtomicU64; 3],
    pub undelivered: AtomicU64,
    /// CONNECTs accepted (a session started); for the metrics endpoint only, so summary.json's
    /// `mock.stats` keeps its fields.
    pub connects_accepted: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct StatsSnapshot {
    /// Connections accepted (TCP).
    pub connections: u64,
    /// Connections open at the end.
    pub active_connections: u64,
    /// TLS handshakes that failed.
    pub tls_failures: u64,
    /// CONNECTs refused in the CONNACK.
    pub connack_refused: u64,
    /// Connections closed for a policy violation.
    pub policy_disconnects: u64,
    /// Connections closed for an MQTT protocol error.
    pub protocol_errors: u64,
    /// Connections closed because a newer one used the same client ID.
    pub takeovers: u64,
    /// API calls accepted and rejected, by API (`create_keys`, `create_from_csr`,
    /// `register_thing`).
    pub create_keys_accepted: u64,
    pub create_keys_rejected: u64,
    pub create_from_csr_accepted: u64,
    pub create_from_csr_rejected: u64,
    pub register_thing_accepted: u64,
    pub register_thing_rejected: u64,
    /// API responses not delivered: the client had not subscribed to (or may not receive) the
    /// response topic.
    pub undelivered_responses: u64,
    /// API calls and CONNECTs refused by the quotas (`[quotas]`).
    pub throttled_create_keys: u64,
    pub throttled_create_from_csr: u64,
    pub throttled_register_thing: u64,
    pub throttled_connects: u64,
}

pub(crate) struct State {
    settings: MockSettings,
    arn: ArnContext,
    pki: Arc<Pki>,
    /// Templates by name; the control plane adds, changes and removes them at run time.
    templates: control::templates::TemplateStore,
    tls: TlsAcceptor,
    registry: Registry,
    keys: KeyPool,
    quotas: quotas::Quotas,
    hooks: HashMap<String, hooks::Hook>,
    /// The connections' provisioning workers, which outlive their connection: the mock waits
    /// for them when it stops, so its report counts what they completed.
    workers: TaskTracker,
    /// Cancelled when the mock stops: workers start no further request.
    stopping: CancellationToken,
    /// What the registry held when the mock was ready (the claim certificate, a registry
    /// loaded from the PKI directory): the report's run figures are counted from it.
    at_start: RegistryCounts,
    /// client ID -> its open session: the newest connection wins.
    sessions: Mutex<HashMap<String, session::OpenSession>>,
    stats: Stats,
    active: watch::Sender<u64>,
    next_connection: AtomicU64,
    /// What the account held before any request.
    preloaded: Preloaded,
    /// The control plane's SigV4 keys, when given.
    credentials: Option<Arc<control::auth::Credentials>>,
}

/// The running mock.
pub struct MockHandle {
    pub addr: SocketAddr,
    /// The control plane's address (plain HTTP), when it is served.
    pub control_addr: Option<SocketAddr>,
    pub root_ca_path: PathBuf,
    pub claim_cert_path: PathBuf,
    pub claim_key_path: PathBuf,
    pub pki: Arc<Pki>,
    state: Arc<State>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<MockReport>,
}

/// What the mock reports when it stops.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MockReport {
    /// The mock's counters: connections, refusals, API calls accepted and rejected, throttling.
    pub stats: StatsSnapshot,
    /// What the registry holds at the end.
    pub registry: RegistryCounts,
    /// What the registry held when the mock was ready, before any device connected: the claim
    /// certificate (ACTIVE), and what a registry loaded from the PKI directory held.
    pub registry_at_start: RegistryCounts,
    /// Things the registry gained during the run (`registry.things` less
    /// `registry_at_start.things`).
    pub things: usize,
    /// ACTIVE certificates the registry gained during the run: one per RegisterThing the mock
    /// completed, whether or not its device learnt of it. More than the devices provisioned
    /// means registrations completed after their device had given up.
    pub certificates_active: usize,
    /// PENDING_ACTIVATION certificates the registry gained during the run: issued, never
    /// registered. Equals `certificates.orphaned` less the registrations completed after their
    /// device gave up (`certificates_active` − `certificates.registered`).
    pub certificates_pending: usize,
    /// The RSA key pool's use.
    pub keys: KeyPoolStats,
    /// Key type CreateKeysAndCertificate returned (`rsa2048` or `p256`).
    pub key_type: &'static str,
    /// The registry file written at shutdown in the PKI directory, when one was written.
    pub registry_file: Option<PathBuf>,
    /// Unused pooled RSA keys cached in the PKI directory for the next start.
    pub cached_keys: usize,
    /// Per template: invocations, decisions, cold starts of its pre-provisioning hook.
    pub hooks: BTreeMap<String, hooks::HookStats>,
}

impl MockHandle {
    pub fn stats(&self) -> StatsSnapshot {
        self.state.snapshot()
    }

    pub fn registry(&self) -> &Registry {
        &self.state.registry
    }

    pub fn key_pool(&self) -> KeyPoolStats {
        self.state.keys.stats()
    }

    /// What the mock put into its account at start (nothing with [`MockConfig::empty`]).
    /// The templates devices can provision with now (journaled ones included).
    pub fn template_names(&self) -> Vec<String> {
        self.state.templates.names()
    }

    pub fn preloaded(&self) -> &Preloaded {
        &self.state.preloaded
    }

    /// Read access to the counters, for the metrics endpoint; it outlives the handle.
    pub fn observer(&self) -> MockObserver {
        MockObserver(self.state.clone())
    }

    /// Wait until at most `n` connections are open.
    pub async fn wait_active_at_most(&self, n: u64) {
        let mut rx = self.state.active.subscribe();
        let _ = rx.wait_for(|active| *active <= n).await;
    }

    /// Stop (if not already stopping) and wait for every session to end.
    pub async fn stop(self) -> MockReport {
        self.shutdown.cancel();
        self.join().await
    }

    /// Wait for the mock to stop after its shutdown token is cancelled.
    pub async fn join(self) -> MockReport {
        match self.task.await {
            Ok(report) => report,
            Err(_) => self.state.report(None, 0),
        }
    }
}

/// The mock's counters as a scrape reads them (atomics; the hooks' and key pool's own stats).
#[derive(Clone)]
pub struct MockObserver(Arc<State>);

impl std::fmt::Debug for MockObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MockObserver").field(&self.stats()).finish()
    }
}

impl MockObserver {
    pub fn stats(&self) -> StatsSnapshot {
        self.0.snapshot()
    }

    pub fn connects_accepted(&self) -> u64 {
        self.0.stats.connects_accepted.load(Ordering::Relaxed)
    }

    /// Per template with a hook: its invocations and decisions.
    pub fn hooks(&self) -> BTreeMap<String, hooks::HookStats> {
        self.0.hook_stats()
    }

    pub fn keys(&self) -> KeyPoolStats {
        self.0.keys.stats()
    }
}

impl State {
    fn snapshot(&self) -> StatsSnapshot {
        let s = &self.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: g(&s.connections),
            active_connections: *self.active.borrow(),
            tls_failures: g(&s.tls_failures),
            connack_refused: g(&s.connack_refused),
            policy_disconnects: g(&s.policy_disconnects),
            protocol_errors: g(&s.protocol_errors),
            takeovers: g(&s.takeovers),
            create_keys_accepted: g(&s.accepted[0]),
            create_keys_rejected: g(&s.rejected[0]),
            create_from_csr_accepted: g(&s.accepted[1]),
            create_from_csr_rejected: g(&s.rejected[1]),
            register_thing_accepted: g(&s.accepted[2]),
            register_thing_rejected: g(&s.rejected[2]),
            undelivered_responses: g(&s.undelivered),
            throttled_create_keys: g(&s.throttled[0]),
            throttled_create_from_csr: g(&s.throttled[1]),
            throttled_register_thing: g(&s.throttled[2]),
            throttled_connects: g(&s.throttled_connects),
        }
    }

    fn report(&self, registry_file: Option<PathBuf>, cached_keys: usize) -> MockReport {
        let registry = self.registry.counts();
        let start = self.at_start;
        MockReport {
            stats: self.snapshot(),
            registry,
            registry_at_start: start,
            things: registry.things.saturating_sub(start.things),
            certificates_active: registry
                .active_certificates
                .saturating_sub(start.active_certificates),
            certificates_pending: registry
                .pending_certificates
                .saturating_sub(start.pending_certificates),
            keys: self.keys.stats(),
            key_type: self.keys.algorithm().as_str(),
            registry_file,
            cached_keys,
            hooks: self.hook_stats(),
        }
    }

    fn hook_stats(&self) -> BTreeMap<String, hooks::HookStats> {
        self.hooks
            .iter()
            .map(|(name, hook)| (name.clone(), hook.stats()))
            .collect()
    }
}

/// A listening socket for the mock's MQTT endpoint on `addr` (SO_REUSEADDR, backlog
/// [`crate::http::LISTEN_BACKLOG`]: bursts of thousands of devices connecting at once must queue,
/// not lose their SYN; a dropped SYN is retried only after a second and would show as connect
/// latency that no endpoint caused). The kernel caps the backlog at `net.core.somaxconn`.
pub fn listen(addr: std::net::SocketAddr) -> Result<TcpListener, crate::http::BindError> {
    crate::http::bind("--listen", addr)
}

/// Build the rustls server configuration: TLS 1.2 and 1.3, client certificate required and
/// verified against the root CA, ALPN `x-amzn-mqtt-ca` accepted when offered.
pub fn server_tls_config(pki: &Pki) -> Result<rustls::ServerConfig, MockError> {
    let provider = crate::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root_ca_der.clone())?;
    let verifier = crate::tls::CachingClientVerifier::new(Arc::new(roots))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain.clone(), pki.server_key())?;
    config.alpn_protocols = vec![ALPN_MQTT_CA.to_vec()];
    // AWS IoT sends no session tickets (`spec/aws-fleet-provisioning.md` §6).
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Start the mock on `listener`. It runs until `shutdown` is cancelled.
pub async fn start(
    config: MockConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<MockHandle, MockError> {
    let addr = listener.local_addr()?;
    let tls = TlsAcceptor::from(Arc::new(server_tls_config(&config.pki)?));
    // Bound before anything starts (hooks, key generators), so a taken port fails cleanly.
    let control_listener = config
        .control
        .map(|addr| crate::http::bind("--control", addr))
        .transpose()?;
    let settings = config.settings;
    let arn = ArnContext {
        region: settings.region.clone(),
        account: settings.account.clone(),
    };
    let registry = if config.persist_registry {
        Registry::open(&config.pki.dir, settings.registry)?
    } else {
        Registry::new(settings.registry)
    };
    for group in &settings.thing_groups {
        registry.add_thing_group(group);
    }
    let mut preloaded = if config.preload {
        preload_claim(&config.pki, &config.templates, &arn, &registry)?
    } else {
        Preloaded::default()
    };

    let mut hook_map = HashMap::new();
    for (template_name, hook_settings) in &settings.hooks {
        if !config.templates.contains_key(template_name) {
            return Err(MockError::Config {
                path: format!("hooks.{template_name}"),
                message: format!(
                    "no template named {template_name:?} (known: {})",
                    config
                        .templates
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let mut hook_settings = hook_settings.clone();
        if hook_settings.kind == hooks::HookKind::Http
            && hook_settings.url.as_deref() == Some("embedded")
        {
            let url = http_hook::start(
                hook_settings
                    .prefix
                    .clone()
                    .unwrap_or_else(|| "123456".into()),
                hook_settings
                    .parameter
                    .clone()
                    .unwrap_or_else(|| "SerialNumber".into()),
                settings.http,
                shutdown.clone(),
            )
            .await?;
            hook_settings.url = Some(url);
        }
        let hook = hooks::Hook::new(template_name, &hook_settings, &settings.base_dir).map_err(
            |message| MockError::Config {
                path: format!("hooks.{template_name}"),
                message,
            },
        )?;
        hook.warm_up().await.map_err(|message| MockError::Config {
            path: format!("hooks.{template_name}"),
            message,
        })?;
        hook_map.insert(template_name.clone(), hook);
    }
    let cache = config.pki.dir.join(keypool::POOL_FILE);
    let keys = KeyPool::new(settings.keys, settings.key_pool_size, Some(cache));
    let at_start = registry.counts();
    let templates =
        control::templates::TemplateStore::new(config.templates, &config.template_bodies);
    templates.restore(registry.journaled_templates(), &arn);
    preloaded
        .templates
        .retain(|t| templates.names().contains(t));
    let state = Arc::new(State {
        arn,
        pki: config.pki.clone(),
        templates,
        tls,
        registry,
        keys,
        quotas: quotas::Quotas::new(&settings.quotas),
        hooks: hook_map,
        sessions: Mutex::new(HashMap::new()),
        workers: TaskTracker::new(),
        stopping: shutdown.clone(),
        at_start,
        stats: Stats::default(),
        active: watch::Sender::new(0),
        next_connection: AtomicU64::new(1),
        preloaded,
        credentials: config.credentials,
        settings,
    });
    let write_registry = config.write_registry;
    let control_addr = match control_listener {
        Some(control_listener) => {
            let control_addr = control_listener.local_addr()?;
            tracing::info!("control plane (AWS IoT REST API) on http://{control_addr}");
            control::spawn(state.clone(), control_listener, addr, shutdown.clone());
            Some(control_addr)
        }
        None => None,
    };
    let task = tokio::spawn(accept_loop(
        state.clone(),
        listener,
        shutdown.clone(),
        write_registry,
    ));
    Ok(MockHandle {
        addr,
        control_addr,
        root_ca_path: config.pki.root_ca_path(),
        claim_cert_path: config.pki.claim_cert_path(),
        claim_key_path: config.pki.claim_key_path(),
        pki: config.pki,
        state,
        shutdown,
        task,
    })
}

/// The ready-to-run account: the claim certificate carries the seed's claim policy (+
/// create-from-csr) for every template.
fn preload_claim(
    pki: &Pki,
    templates: &BTreeMap<String, Arc<Template>>,
    arn: &ArnContext,
    registry: &Registry,
) -> Result<Preloaded, MockError> {
    let claim_id = pki::certificate_id(pki.claim_cert_der.as_ref());
    let mut policy_names = Vec::new();
    for name in templates.keys() {
        let json = policy::claim_policy_json(arn, name);
        let doc = PolicyDocument::parse(&json).map_err(|e| MockError::Config {
            path: "built-in claim policy".into(),
            message: e.to_string(),
        })?;
        let policy_name = if name == template::SEED_TEMPLATE_NAME {
            CLAIM_POLICY_NAME.to_string()
        } else {
            format!("{CLAIM_POLICY_NAME}-{name}")
        };
        registry.add_policy(&policy_name, doc, json);
        policy_names.push(policy_name);
    }
    let policy_refs: Vec<&str> = policy_names.iter().map(String::as_str).collect();
    registry.add_certificate(&claim_id, CertificateStatus::Active, &policy_refs);
    Ok(Preloaded {
        templates: templates.keys().cloned().collect(),
        policies: policy_names,
        claim_certificate: Some(claim_id),
    })
}

async fn accept_loop(
    state: Arc<State>,
    listener: TcpListener,
    shutdown: CancellationToken,
    write_registry: bool,
) -> MockReport {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    tracker.spawn(session::run(state.clone(), tcp, peer, shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors or similar: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    state.workers.close();
    state.workers.wait().await;
    for hook in state.hooks.values() {
        hook.shutdown().await;
    }

    let state2 = state.clone();
    let pki_dir = state.pki.dir.clone();
    // Key-pool shutdown joins a thread and writes files: keep it off the async workers.
    let (registry_file, cached_keys) = tokio::task::spawn_blocking(move || {
        let cached = state2.keys.shutdown().unwrap_or_else(|e| {
            tracing::warn!("could not cache the key pool: {e}");
            0
        });
        state2.registry.close_journal();
        let mut file = None;
        if write_registry {
            let path = pki_dir.join(REGISTRY_FILE);
            let text = serde_json::to_vec_pretty(&state2.registry.to_json()).unwrap_or_default();
            match pki::write_file(&path, &text, false) {
                Ok(()) => file = Some(path),
                Err(e) => tracing::warn!("could not write the registry: {e}"),
            }
        }
        (file, cached)
    })
    .await
    .unwrap_or((None, 0));
    state.report(registry_file, cached_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,500 devices connecting at once while nobody accepts yet: every TCP handshake completes
    /// into the accept queue. With tokio's default backlog (1,024) the rest would lose their
    /// SYN and wait out a one-second retransmission.
    #[tokio::test]
    async fn a_burst_larger_than_the_default_backlog_is_queued_not_dropped() {
        let limit = crate::limits::raise_nofile();
        // The kernel caps any backlog at net.core.somaxconn (4096 by default since Linux 5.4).
        let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        let burst: u64 = 1500.min(somaxconn);
        assert!(limit >= burst + 64, "open-file limit {limit}");
        let listener = listen((std::net::Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..burst).map(|_| {
            tokio::time::timeout(
                Duration::from_millis(800),
                tokio::net::TcpStream::connect(addr),
            )
        });
        let results = futures_util::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected as u64, burst);
        drop(listener);
    }
}
