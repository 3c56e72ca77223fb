//! `fleetstorm k8s render`: the Kubernetes manifests of a sharded run
//! (docs/shards-merge-kubernetes.md, "Kubernetes").
//!
//! One scenario becomes a ConfigMap holding the scenario file byte for byte, a ReadWriteMany
//! volume for the results, a headless Service for the pods' metrics port, an Indexed Job of N
//! shards that all start at the same `--start-at` instant with one shared `--run-id`, and a
//! suspended merge Job that is resumed once the shards are done. Resource requests come from the
//! scenario and this project's own measured figures ([`sizing`]).
//!
//! The manifests are built as JSON values and written as YAML by `yaml_serde` (the YAML
//! organisation's maintained fork of the archived serde_yaml), one document per resource.

mod mock;
pub mod sizing;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::scenario::{Plan, Scenario, Target};

/// Where the pods find the scenario, the claim identity and their results.
pub const SCENARIO_PATH: &str = "/etc/fleetstorm/scenario.toml";
pub const CLAIM_DIR: &str = "/etc/fleetstorm/claim";
pub const RESULTS_DIR: &str = "/results";
/// The pods' OpenMetrics port (`--metrics-listen`).
pub const METRICS_PORT: u16 = 9464;
/// The numeric non-root user of the image (Containerfile).
pub const RUN_AS_USER: u64 = 65532;
/// Kubernetes caps an Indexed Job's completions at 100,000.
pub const MAX_SHARDS: u64 = 100_000;
/// The longest `--name`: the Job's pods are named `<name>-<index>-<suffix>` and their hostname
/// `<name>-<index>` must stay a 63-character DNS label.
pub const MAX_NAME: usize = 40;

/// The files `--out DIR` writes, in the order `kubectl apply -k` needs nothing special for.
pub const FILES: [&str; 5] = [
    "configmap.yaml",
    "pvc.yaml",
    "service.yaml",
    "job.yaml",
    "merge-job.yaml",
];

/// The files `--mock` adds: the in-cluster mock's Deployment and Service.
pub const MOCK_FILES: [&str; 2] = ["mock-deployment.yaml", "mock-service.yaml"];

#[derive(Debug, clap::Subcommand)]
pub enum K8sCommand {
    /// Write the manifests of a sharded run: ConfigMap (the scenario), results PVC, headless
    /// metrics Service, the Indexed Job of the shards and a suspended merge Job.
    Render(RenderArgs),
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The scenario file (validated here; shipped to the pods byte for byte).
    pub scenario: PathBuf,
    /// Number of shards: pods of the Indexed Job (completions = parallelism).
    #[arg(long)]
    pub shards: u64,
    /// The instant every shard's schedule starts (RFC 3339, UTC, e.g. 2026-12-01T10:00:00Z).
    #[arg(long, conflicts_with = "start_in")]
    pub start_at: Option<String>,
    /// Start the schedule this long after rendering (time to apply and pull the image).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub start_in: Duration,
    /// The fleetstorm container image.
    #[arg(long, default_value = concat!("fleetstorm:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Namespace of every resource (default: kubectl's current one).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Name of the Job and prefix of the other resources (default: fleetstorm-<scenario name>).
    #[arg(long)]
    pub name: Option<String>,
    /// Secret holding claim.pem, claim.key and root-ca.pem (endpoint targets only).
    #[arg(long, default_value = "fleetstorm-claim")]
    pub claim_secret: String,
    /// The run ID all shards share (the `{run}` value; default: a new random one).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Target this endpoint instead of the scenario's (HOST or HOST:PORT), passed to the pods.
    #[arg(long, conflicts_with = "mock")]
    pub endpoint: Option<String>,
    /// Also run one standalone `fleetstorm mock` in the cluster (a Deployment and its Service,
    /// with the scenario's [target.mock] settings) and point every shard at it, instead of one
    /// embedded mock per shard. A mock target only; the pods' runs then need --yes.
    #[arg(long)]
    pub mock: bool,
    /// With --mock: Secret holding the mock's PKI directory, made with `fleetstorm pki init DIR
    /// --hostname <name>-mock` (root-ca.pem, root-ca.key, server.pem, server.key, claim.pem,
    /// claim.key).
    #[arg(long, default_value = "fleetstorm-pki")]
    pub pki_secret: String,
    /// With --mock: Secret holding an AWS shared credentials file under the key `credentials`;
    /// the mock's control plane and metrics are then served to the cluster, SigV4-checked
    /// against its keys. Without it the control plane stays on the pod's loopback.
    #[arg(long, requires = "mock")]
    pub control_secret: Option<String>,
    /// Override a scenario field (path=value, repeatable), passed to the pods.
    #[arg(long = "set")]
    pub sets: Vec<String>,
    /// Confirm the pods' runs against a non-loopback endpoint (their args then carry --yes).
    #[arg(long)]
    pub yes: bool,
    /// Allow a --start-at more than a day ahead (the pods wait until then; their args then
    /// carry --wait-long).
    #[arg(long)]
    pub wait_long: bool,
    /// Write one file per resource and a kustomization.yaml into DIR (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What kind of failure: the CLI maps it to its exit code (docs/reference/exit-codes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad flag (exit 2).
    Usage,
    /// An invalid or unportable scenario (exit 3).
    Config,
    /// A remote endpoint without `--yes` (exit 2, nothing rendered).
    NotConfirmed,
    /// The manifests could not be written (exit 1).
    Write,
}

/// Why rendering failed.
#[derive(Debug)]
pub struct RenderError {
    pub kind: ErrorKind,
    pub message: String,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn usage(message: impl Into<String>) -> RenderError {
    RenderError {
        kind: ErrorKind::Usage,
        message: message.into(),
    }
}

fn config(message: impl Into<String>) -> RenderError {
    RenderError {
        kind: ErrorKind::Config,
        message: message.into(),
    }
}

/// Run a `fleetstorm k8s` command.
pub fn run(command: K8sCommand) -> Result<(), RenderError> {
    match command {
        K8sCommand::Render(args) => render_command(&args),
    }
}

fn render_command(args: &RenderArgs) -> Result<(), RenderError> {
    let rendered = render(args, SystemTime::now())?;
    for note in &rendered.notes {
        eprintln!("fleetstorm k8s render: {note}");
    }
    match &args.out {
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(rendered.stream().as_bytes());
        }
        Some(dir) => {
            let write_err = |p: &Path, e: std::io::Error| RenderError {
                kind: ErrorKind::Write,
                message: format!("cannot write {}: {e}", p.display()),
            };
            std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
            for (file, text) in rendered.files() {
                let path = dir.join(file);
                std::fs::write(&path, text).map_err(|e| write_err(&path, e))?;
            }
            eprintln!(
                "fleetstorm k8s render: wrote {} (kubectl apply -k {})",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// The rendered manifests.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The comment lines heading the output (what was rendered, the sizing and its figures).
    pub header: Vec<String>,
    /// One document per file of [`FILES`], in that order.
    pub documents: Vec<String>,
    /// Warnings for stderr.
    pub notes: Vec<String>,
    /// The file of each document under `--out DIR`, in order: [`FILES`], then with `--mock`
    /// [`MOCK_FILES`].
    pub file_names: Vec<&'static str>,
    pub name: String,
    pub start_at: String,
    pub run_id: String,
}

impl Rendered {
    fn comment(&self) -> String {
        self.header.iter().map(|l| format!("# {l}\n")).collect()
    }

    /// Every resource as one multi-document YAML stream (`kubectl apply -f -`).
    pub fn stream(&self) -> String {
        let mut out = self.comment();
        for doc in &self.documents {
            out.push_str("---\n");
            out.push_str(doc);
        }
        out
    }

    /// (file name, contents) of `--out DIR`: one file per resource and a kustomization.yaml.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = self
            .file_names
            .iter()
            .zip(&self.documents)
            .map(|(f, doc)| (f.to_string(), format!("{}{doc}", self.comment())))
            .collect();
        let mut kustomization = self.comment();
        kustomization.push_str(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
        );
        for f in &self.file_names {
            kustomization.push_str(&format!("- {f}\n"));
        }
        files.push(("kustomization.yaml".into(), kustomization));
        files
    }
}

/// Validate the scenario and `args` and build the manifests; `now` anchors `--start-in`.
pub fn render(args: &RenderArgs, now: SystemTime) -> Result<Rendered, RenderError> {
    if args.shards == 0 || args.shards > MAX_SHARDS {
        return Err(usage(format!(
            "--shards {}: must be 1 to {MAX_SHARDS} (the Indexed Job limit)",
            args.shards
        )));
    }
    let text = std::fs::read_to_string(&args.scenario)
        .map_err(|e| config(format!("{}: {e}", args.scenario.display())))?;
    let scenarios =
        Scenario::load_variants(&args.scenario, &args.sets).map_err(|e| config(e.to_string()))?;
    let scenario = scenarios
        .first()
        .ok_or_else(|| config(format!("{}: no scenario", args.scenario.display())))?;
    // Every variant runs on the pods: each must be portable, and none may leave a shard idle.
    for variant in &scenarios {
        check_portable(variant, &args.scenario)?;
    }
    crate::shard::check_devices(
        args.shards,
        &format!("--shards {}", args.shards),
        &scenarios,
    )
    .map_err(usage)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => default_name(&scenario.name),
    };
    check_name("--name", &name, MAX_NAME)?;
    // --mock: the shards' endpoint is the in-cluster mock's Service.
    let (mock_settings, endpoint_arg) = if args.mock {
        check_name("--pki-secret", &args.pki_secret, 253)?;
        if let Some(secret) = &args.control_secret {
            check_name("--control-secret", secret, 253)?;
        }
        (
            Some(mock::settings(&scenarios, &args.scenario)?),
            Some(format!("{}:{}", mock::service_name(&name), mock::MQTT_PORT)),
        )
    } else {
        (None, args.endpoint.clone())
    };
    let endpoint = endpoint_arg
        .as_deref()
        .map(crate::guard::parse_endpoint)
        .transpose()
        .map_err(usage)?;
    let mut notes = Vec::new();
    match crate::guard::check(
        &scenarios,
        endpoint.as_ref(),
        args.yes,
        crate::shard::Shard::WHOLE,
    ) {
        crate::guard::Decision::Local => {}
        crate::guard::Decision::Confirmed(plan) => notes.push(plan.render().trim_end().into()),
        crate::guard::Decision::Refused(plan) => {
            return Err(RenderError {
                kind: ErrorKind::NotConfirmed,
                message: format!(
                    "{}\nnot confirmed: nothing was rendered. Render again with --yes (the pods' runs then carry --yes), or set confirm_remote = true in the scenario's [target]",
                    plan.render().trim_end()
                ),
            });
        }
    }

    if let Some(ns) = &args.namespace {
        check_name("--namespace", ns, 63)?;
    }
    let endpoint_target = matches!(scenario.target, Target::Endpoint { .. });
    if endpoint_target {
        check_name("--claim-secret", &args.claim_secret, 253)?;
    }
    let run_id = match &args.run_id {
        // The rule of `run --run-id`.
        Some(id) if !crate::scenario::valid_run_id(id) => {
            return Err(usage(format!(
                "--run-id {id:?}: 1 to {} characters of lowercase base32 (a-z, 2-7)",
                crate::scenario::MAX_RUN_ID
            )));
        }
        Some(id) => id.clone(),
        None => crate::scenario::new_run_id(),
    };
    let start = match &args.start_at {
        // The rule of `run --start-at`.
        Some(t) => crate::shard::StartAt::parse(t).map_err(usage)?.0,
        None => now + args.start_in,
    };
    let start_at = humantime::format_rfc3339_seconds(start).to_string();
    crate::shard::StartAt(start)
        .check_ahead(now, args.wait_long)
        .map_err(usage)?;
    if args.start_at.is_some() && start < now {
        notes.push(format!(
            "--start-at {start_at} is in the past: every shard will report that start lag"
        ));
    }

    let shards = args.shards;
    let fitted = sizing::size_all(&scenarios, shards)
        .ok_or_else(|| config(format!("{}: no scenario", args.scenario.display())))?;
    let sizing = fitted.pods.clone();
    if sizing.suggested_shards > shards {
        notes.push(format!(
            "the peak rate needs about {} shards to stay at or under the measured 2 cores per pod (--shards {shards} gives each {} millicores)",
            sizing.suggested_shards, sizing.cpu_millis
        ));
    }
    if sizing.open_files > 20_000 {
        notes.push(format!(
            "each shard needs about {} open files: make sure the nodes' container runtime allows that many (Kubernetes cannot raise ulimits), or use more shards",
            sizing.open_files
        ));
    }
    let mut header = vec![
        format!(
            "fleetstorm k8s render: scenario {:?} ({} devices) as {shards} shards, start at {start_at}, run ID {run_id}.",
            scenario.name, scenario.devices.count
        ),
        format!(
            "Apply all; then: kubectl wait --for=condition=complete job/{name} --timeout=<schedule + margin>; kubectl patch job/{name}-merge --type=merge -p '{{\"spec\":{{\"suspend\":false}}}}'"
        ),
    ];
    header.extend(sizing::explain_variants(&fitted));
    header.extend(sizing::explain(&sizing, shards));

    let ctx = Ctx {
        name: &name,
        namespace: args.namespace.as_deref(),
        image: &args.image,
    };
    // Every option as one `--flag=value` word: a value such as the start time would otherwise
    // be a YAML 1.1 timestamp to some readers (PyYAML, so the schema validator, reads it so).
    let mut run_args: Vec<String> = vec![
        "run".into(),
        SCENARIO_PATH.into(),
        format!("--shards={shards}"),
        format!("--start-at={start_at}"),
        format!("--run-id={run_id}"),
        format!("--out={RESULTS_DIR}/{name}/shard-$(JOB_COMPLETION_INDEX)"),
        format!("--metrics-listen=0.0.0.0:{METRICS_PORT}"),
        "--metrics-linger=30s".into(),
    ];
    if let Some(e) = &endpoint_arg {
        run_args.push(format!("--endpoint={e}"));
    }
    if endpoint_target {
        for (field, file) in [
            ("ca", "root-ca.pem"),
            ("claim_cert", "claim.pem"),
            ("claim_key", "claim.key"),
        ] {
            run_args.push(format!("--set=target.{field}={CLAIM_DIR}/{file}"));
        }
    }
    for set in &args.sets {
        run_args.push(format!("--set={set}"));
    }
    if args.mock {
        // The in-cluster mock's PKI, from its Secret: the claim identity and the CA.
        run_args.push(format!("--set=target.pki={}", mock::PKI_SECRET_DIR));
    } else if let Target::Mock { pki: Some(_), .. } = &scenario.target {
        // The scenario's PKI folder is on this machine: each pod makes its own in /tmp.
        run_args.push("--set=target.pki=/tmp/pki".into());
    }
    if args.yes {
        run_args.push("--yes".into());
    }
    if args.wait_long {
        run_args.push("--wait-long".into());
    }

    let secret = if args.mock {
        Some((args.pki_secret.as_str(), mock::PKI_SECRET_DIR))
    } else {
        endpoint_target.then_some((args.claim_secret.as_str(), CLAIM_DIR))
    };
    let mut documents = vec![
        config_map(&ctx, &text, mock_settings.as_deref()),
        pvc(&ctx, sizing.storage_gib),
        service(&ctx),
        shard_job(&ctx, shards, run_args, &sizing, secret),
        merge_job(&ctx, shards, &sizing),
    ];
    let mut file_names = FILES.to_vec();
    if args.mock {
        let host = mock::service_name(&name);
        header.push(format!(
            "The mock's PKI: fleetstorm pki init pki --hostname {host}; kubectl create secret generic {} --from-file=pki/",
            args.pki_secret
        ));
        header.push(match &args.control_secret {
            Some(s) => format!(
                "Its control plane, http://{host}:{}, takes SigV4 with the keys of Secret {s} (kubectl create secret generic {s} --from-file=credentials=FILE, an AWS shared credentials file).",
                mock::CONTROL_PORT
            ),
            None => format!(
                "Its control plane listens on the pod's loopback only: kubectl port-forward deployment/{host} {}",
                mock::CONTROL_PORT
            ),
        });
        documents.push(mock::deployment(
            &ctx,
            &args.pki_secret,
            args.control_secret.as_deref(),
            sizing.merge_memory_mib,
        ));
        documents.push(mock::service(&ctx, args.control_secret.is_some()));
        file_names.extend(MOCK_FILES);
    }
    let documents = documents
        .iter()
        .map(|v| yaml_serde::to_string(v).map_err(|e| config(format!("YAML: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rendered {
        header,
        documents,
        notes,
        file_names,
        name,
        start_at,
        run_id,
    })
}

/// Refuse what the pods could not have: the ConfigMap ships the scenario file only.
fn check_portable(scenario: &Plan, path: &Path) -> Result<(), RenderError> {
    let Target::Mock { mock, .. } = &scenario.target else {
        return Ok(());
    };
    let variant = variant_label(scenario);
    let refuse = |field: String| {
        config(format!(
            "{}{variant}: {field} names a file, which the pods would not have (only the scenario file is shipped, in a ConfigMap)",
            path.display()
        ))
    };
    if let Some(name) = mock.templates.keys().next() {
        return Err(refuse(format!("target.mock.templates.{name}")));
    }
    for (template, hook) in &mock.hooks {
        if hook.file.is_some() {
            return Err(refuse(format!("target.mock.hooks.{template}.file")));
        }
        if !hook.command.is_empty() {
            return Err(refuse(format!("target.mock.hooks.{template}.command")));
        }
    }
    Ok(())
}

/// ` (variant "NAME")` for a variant's messages, or nothing.
fn variant_label(plan: &Plan) -> String {
    plan.variant
        .as_deref()
        .map(|v| format!(" (variant {v:?})"))
        .unwrap_or_default()
}

/// `fleetstorm-<scenario name>` as a DNS label.
fn default_name(scenario: &str) -> String {
    let mut name = String::from("fleetstorm-");
    for c in scenario.chars() {
        let c = c.to_ascii_lowercase();
        name.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    let mut name: String = name.chars().take(MAX_NAME).collect();
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// A DNS-1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric.
fn check_name(flag: &str, name: &str, max: usize) -> Result<(), RenderError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "{flag} {name:?}: must be 1-{max} lowercase letters, digits and '-', starting and ending with a letter or digit (a Kubernetes name)"
        )))
    }
}

struct Ctx<'a> {
    name: &'a str,
    namespace: Option<&'a str>,
    image: &'a str,
}

impl Ctx<'_> {
    fn labels(&self, component: &str) -> Value {
        json!({
            "app.kubernetes.io/name": "fleetstorm",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
        })
    }

    fn metadata(&self, name: &str, component: &str) -> Value {
        let mut m = json!({ "name": name, "labels": self.labels(component) });
        if let Some(ns) = self.namespace {
            m["namespace"] = json!(ns);
        }
        m
    }

    fn results_claim(&self) -> String {
        format!("{}-results", self.name)
    }
}

/// The scenario file byte for byte, and with `--mock` the in-cluster mock's settings file.
fn config_map(ctx: &Ctx, text: &str, mock_settings: Option<&str>) -> Value {
    let mut data = json!({ "scenario.toml": text });
    if let Some(settings) = mock_settings {
        data[mock::SETTINGS_KEY] = json!(settings);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ctx.metadata(&format!("{}-scenario", ctx.name), "scenario"),
        "data": data,
    })
}

fn pvc(ctx: &Ctx, gib: u64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": ctx.metadata(&ctx.results_claim(), "results"),
        "spec": {
            // Every shard pod and the merge pod mount it at once, on any node: an NFS, EFS,
            // Filestore, Azure Files or CephFS class (set storageClassName to yours).
            "accessModes": ["ReadWriteMany"],
            "resources": { "requests": { "storage": format!("{gib}Gi") } },
        },
    })
}

fn service(ctx: &Ctx) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(ctx.name, "metrics"),
        "spec": {
            "clusterIP": "None",
            "selector": ctx.labels("shard"),
            "ports": [{ "name": "metrics", "port": METRICS_PORT, "targetPort": "metrics" }],
        },
    })
}

fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": { "drop": ["ALL"] },
    })
}

fn shard_job(
    ctx: &Ctx,
    shards: u64,
    args: Vec<String>,
    sizing: &sizing::Sizing,
    secret: Option<(&str, &str)>,
) -> Value {
    let resources = json!({
        "cpu": format!("{}m", sizing.cpu_millis),
        "memory": format!("{}Mi", sizing.memory_mib),
    });
    let mut mounts = vec![
        json!({ "name": "scenario", "mountPath": SCENARIO_PATH, "subPath": "scenario.toml", "readOnly": true }),
        json!({ "name": "results", "mountPath": RESULTS_DIR }),
        json!({ "name": "tmp", "mountPath": "/tmp" }),
    ];
    let mut volumes = vec![
        json!({ "name": "scenario", "configMap": { "name": format!("{}-scenario", ctx.name) } }),
        json!({ "name": "results", "persistentVolumeClaim": { "claimName": ctx.results_claim() } }),
        json!({ "name": "tmp", "emptyDir": { "sizeLimit": "256Mi" } }),
    ];
    // The claim identity (an endpoint target) or the in-cluster mock's PKI (`--mock`).
    if let Some((secret, dir)) = secret {
        mounts.push(json!({ "name": "claim", "mountPath": dir, "readOnly": true }));
        // 0440: readable by the pod's group (fsGroup), never written.
        volumes.push(
            json!({ "name": "claim", "secret": { "secretName": secret, "defaultMode": 0o440 } }),
        );
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": ctx.metadata(ctx.name, "shard"),
        "spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            // A shard re-run late is not the same test (and against AWS its second attempt
            // would replace the first one's created.csv): a failed index stays failed, the
            // others run on, and `fleetstorm merge --partial` names what is missing.
            "backoffLimitPerIndex": 0,
            "template": {
                "metadata": {
                    "labels": ctx.labels("shard"),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": METRICS_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "restartPolicy": "Never",
                    "subdomain": ctx.name,
                    "securityContext": pod_security(),
                    "containers": [{
                        "name": "fleetstorm",
                        "image": ctx.image,
                        "args": args,
                        "env": [
                            {
                                "name": "JOB_COMPLETION_INDEX",
                                "valueFrom": { "fieldRef": {
                                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']",
                                } },
                            },
                            { "name": "TMPDIR", "value": "/tmp" },
                        ],
                        "ports": [{ "name": "metrics", "containerPort": METRICS_PORT }],
                        "resources": { "requests": resources.clone(), "limits": resources },
                        "securityContext": container_security(),
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    })
}

fn merge_job(ctx: &Ctx, shards: u64, sizing: &sizing::Sizing) -> Value {
    let mut args = vec!["merge".to_string()];
    args.extend((0..shards).map(|i| format!("{RESULTS_DIR}/{}/shard-{i}", ctx.name)));
    args.push(format!("--out={RESULTS_DIR}/{}/merged", ctx.name));
    let resources = json!({ "cpu": "1", "memory": format!("{}Mi", sizing.merge_memory_mib) });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": ctx.metadata(&format!("{}-merge", ctx.name), "merge"),
        "spec": {
            // Resumed once the shard Job is complete (docs/shards-merge-kubernetes.md, "The
            // recipe").
            "suspend": true,
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": ctx.labels("merge") },
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": pod_security(),
                    "containers": [{
                        "name": "merge",
                        "image": ctx.image,
                        "args": args,
                        "resources": { "requests": resources.clone(), "limits": resources },
                        "securityContext": container_security(),
                        "volumeMounts": [
                            { "name": "results", "mountPath": RESULTS_DIR },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    }],
                    "volumes": [
                        { "name": "results", "persistentVolumeClaim": { "claimName": ctx.results_claim() } },
                        { "name": "tmp", "emptyDir": { "sizeLimit": "256Mi" } },
                    ],
                },
            },
        },
    })
}
