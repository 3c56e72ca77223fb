//! Pre-provisioning hooks (`spec/aws-fleet-provisioning.md` §3): built-in rules, a Python Lambda
//! handler run unchanged in warm worker processes, any executable speaking JSON on stdin/stdout, or
//! an HTTP service on loopback. Every kind gets added latency and AWS's deadline; deny, error,
//! malformed output and timeout all become a rejected RegisterThing, never a disconnect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::info;

use super::http_hook::HookClient;

#[cfg(test)]
pub(crate) mod testkit;

const SHIM: &str = include_str!("lambda_shim.py");

pub use crate::mock_settings::{CommandMode, HookKind, HookSettings};

/// The AWS event (payloadVersion 2020-04-01).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookEvent {
    pub claim_certificate_id: String,
    pub certificate_id: String,
    pub certificate_pem: String,
    pub template_arn: String,
    pub client_id: String,
    pub parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HookOutcome {
    Allow {
        parameter_overrides: BTreeMap<String, String>,
    },
    Reject {
        status: u16,
        error_code: String,
        message: String,
        cause: HookFailure,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFailure {
    Denied,
    Error,
    Malformed,
    Timeout,
}

#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct HookStats {
    /// Times the hook was called (one per RegisterThing of its template).
    pub invocations: u64,
    /// Calls it allowed.
    pub allowed: u64,
    /// Calls it denied.
    pub denied: u64,
    /// Calls that failed (the hook erred or exited).
    pub errors: u64,
    /// Calls whose answer could not be read.
    pub malformed: u64,
    /// Calls not answered within its deadline.
    pub timeouts: u64,
    /// Hook workers started (a command hook's process).
    pub cold_starts: u64,
}

/// A warm Python worker: the shim with the handler loaded.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

enum Rule {
    Allow,
    SerialPrefix {
        parameter: String,
        prefix: String,
    },
    AllowList {
        parameter: String,
        file: PathBuf,
        cache: Mutex<(Option<SystemTime>, std::collections::HashSet<String>)>,
    },
    DenyFraction {
        fraction: f64,
        rng: Mutex<rand::rngs::StdRng>,
    },
    Python {
        program: String,
        handler_file: PathBuf,
        handler: String,
        shim: PathBuf,
        idle: tokio::sync::Mutex<Vec<Worker>>,
        slots: tokio::sync::Semaphore,
    },
    JsonStdio {
        command: Vec<String>,
    },
    Http {
        client: HookClient,
    },
}

/// One template's hook.
pub struct Hook {
    template: String,
    settings: HookSettings,
    rule: Rule,
    _shim_dir: Option<tempfile::TempDir>,
    counters: [AtomicU64; 7],
}

impl Hook {
    pub fn new(template: &str, settings: &HookSettings, base_dir: &Path) -> Result<Hook, String> {
        let at = |field: &str| format!("hooks.{template}.{field}");
        let resolve = |p: &Path| {
            if p.is_relative() {
                base_dir.join(p)
            } else {
                p.to_path_buf()
            }
        };
        let parameter = settings
            .parameter
            .clone()
            .unwrap_or_else(|| "SerialNumber".into());
        if settings.deadline.is_zero() {
            return Err(format!("{}: must be positive", at("deadline")));
        }
        let mut shim_dir = None;
        let rule = match settings.kind {
            HookKind::None => Rule::Allow,
            HookKind::SerialPrefix => Rule::SerialPrefix {
                parameter,
                prefix: settings
                    .prefix
                    .clone()
                    .ok_or_else(|| format!("{}: required by serial-prefix", at("prefix")))?,
            },
            HookKind::AllowList => {
                let file = resolve(
                    settings
                        .file
                        .as_deref()
                        .ok_or_else(|| format!("{}: required by allow-list", at("file")))?,
                );
                let list = read_list(&file)
                    .map_err(|e| format!("{}: {}: {e}", at("file"), file.display()))?;
                Rule::AllowList {
                    parameter,
                    file,
                    cache: Mutex::new(list),
                }
            }
            HookKind::DenyFraction => {
                if !(0.0..=1.0).contains(&settings.fraction) {
                    return Err(format!("{}: must be between 0 and 1", at("fraction")));
                }
                Rule::DenyFraction {
                    fraction: settings.fraction,
                    rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(settings.seed)),
                }
            }
            HookKind::Command => {
                if settings.command.is_empty() {
                    return Err(format!(
                        "{}: required by command (e.g. [\"python3\", \"handler.py\"])",
                        at("command")
                    ));
                }
                let python = settings.command.last().is_some_and(|c| c.ends_with(".py"));
                match settings.mode.unwrap_or(if python {
                    CommandMode::PythonLambda
                } else {
                    CommandMode::JsonStdio
                }) {
                    CommandMode::PythonLambda => {
                        let [program, file] = settings.command.as_slice() else {
                            return Err(format!(
                                "{}: python-lambda mode takes [interpreter, handler file]",
                                at("command")
                            ));
                        };
                        let handler_file = resolve(Path::new(file));
                        if !handler_file.is_file() {
                            return Err(format!(
                                "{}: {} does not exist",
                                at("command"),
                                handler_file.display()
                            ));
                        }
                        let dir =
                            tempfile::tempdir().map_err(|e| format!("{}: {e}", at("command")))?;
                        let shim = dir.path().join("fleetstorm_lambda_shim.py");
                        std::fs::write(&shim, SHIM)
                            .map_err(|e| format!("{}: {e}", at("command")))?;
                        shim_dir = Some(dir);
                        let workers = settings.workers.max(1);
                        Rule::Python {
                            program: program.clone(),
                            handler_file,
                            handler: settings.handler.clone(),
                            shim,
                            idle: tokio::sync::Mutex::new(Vec::new()),
                            slots: tokio::sync::Semaphore::new(workers),
                        }
                    }
                    CommandMode::JsonStdio => {
                        let mut command = settings.command.clone();
                        command[0] = resolve_program(&command[0], base_dir);
                        Rule::JsonStdio { command }
                    }
                }
            }
            HookKind::Http => {
                let url = settings
                    .url
                    .clone()
                    .ok_or_else(|| format!("{}: required by http", at("url")))?;
                let client = HookClient::new(&url).map_err(|e| format!("{}: {e}", at("url")))?;
                Rule::Http { client }
            }
        };
        let hook = Hook {
            template: template.to_string(),
            settings: settings.clone(),
            rule,
            _shim_dir: shim_dir,
            counters: Default::default(),
        };
        Ok(hook)
    }

    /// Start the warm workers of a Python hook now (they are otherwise started on first use).
    pub async fn warm_up(&self) -> Result<(), String> {
        if let Rule::Python { idle, .. } = &self.rule {
            let n = self.settings.workers.max(1);
            let mut started = Vec::with_capacity(n);
            for _ in 0..n {
                started.push(self.spawn_worker().await?);
            }
            idle.lock().await.extend(started);
        }
        Ok(())
    }

    pub fn stats(&self) -> HookStats {
        let c = |i: usize| self.counters[i].load(Ordering::Relaxed);
        HookStats {
            invocations: c(0),
            allowed: c(1),
            denied: c(2),
            errors: c(3),
            malformed: c(4),
            timeouts: c(5),
            cold_starts: c(6),
        }
    }

    pub async fn shutdown(&self) {
        if let Rule::Python { idle, .. } = &self.rule {
            for mut w in idle.lock().await.drain(..) {
                let _ = w.child.kill().await;
            }
        }
    }

    /// Run the hook for one RegisterThing, within the deadline.
    pub async fn invoke(&self, event: &HookEvent) -> HookOutcome {
        self.counters[0].fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = self.settings.deadline;
        let latency = {
            let mut rng = rand::rng();
            self.settings.latency.sample(&mut rng)
        };
        let decided = tokio::time::timeout(deadline, async {
            tokio::time::sleep(latency).await;
            self.decide(event).await
        })
        .await;
        let outcome = match decided {
            Ok(Ok(Some(overrides))) => HookOutcome::Allow {
                parameter_overrides: overrides,
            },
            Ok(Ok(None)) => self.reject(
                HookFailure::Denied,
                "Pre-provisioning hook denied the request.".into(),
            ),
            Ok(Err((cause, why))) => self.reject(cause, why),
            Err(_) => self.reject(
                HookFailure::Timeout,
                format!(
                    "Pre-provisioning hook timed out after {}.",
                    humantime::format_duration(deadline)
                ),
            ),
        };
        let index = match &outcome {
            HookOutcome::Allow { .. } => 1,
            HookOutcome::Reject {
                cause: HookFailure::Denied,
                ..
            } => 2,
            HookOutcome::Reject {
                cause: HookFailure::Error,
                ..
            } => 3,
            HookOutcome::Reject {
                cause: HookFailure::Malformed,
                ..
            } => 4,
            HookOutcome::Reject {
                cause: HookFailure::Timeout,
                ..
            } => 5,
        };
        self.counters[index].fetch_add(1, Ordering::Relaxed);
        let decision = match &outcome {
            HookOutcome::Allow { .. } => "allow",
            HookOutcome::Reject { cause, .. } => match cause {
                HookFailure::Denied => "deny",
                HookFailure::Error => "error",
                HookFailure::Malformed => "malformed",
                HookFailure::Timeout => "timeout",
            },
        };
        info!(template = %self.template, client_id = %event.client_id, decision, latency_ms = started.elapsed().as_secs_f64() * 1000.0, "pre-provisioning hook");
        outcome
    }

    fn reject(&self, cause: HookFailure, message: String) -> HookOutcome {
        HookOutcome::Reject {
            status: self.settings.deny_status,
            error_code: self.settings.deny_error_code.clone(),
            message,
            cause,
        }
    }

    /// `Ok(Some(overrides))` allow, `Ok(None)` deny, `Err` error / malformed.
    async fn decide(
        &self,
        event: &HookEvent,
    ) -> Result<Option<BTreeMap<String, String>>, (HookFailure, String)> {
        let param = |name: &str| event.parameters.get(name).map(String::as_str).unwrap_or("");
        let rule_answer = |allow: bool| Ok(allow.then(BTreeMap::new));
        match &self.rule {
            Rule::Allow => rule_answer(true),
            Rule::SerialPrefix { parameter, prefix } => rule_answer(
                event.parameters.contains_key(parameter)
                    && param(parameter).starts_with(prefix.as_str()),
            ),
            Rule::AllowList {
                parameter,
                file,
                cache,
            } => {
                let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                if modified != cache.0
                    && let Ok(fresh) = read_list(file)
                {
                    *cache = fresh;
                }
                rule_answer(cache.1.contains(param(parameter)))
            }
            Rule::DenyFraction { fraction, rng } => {
                let x: f64 = rng
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .random::<f64>();
                rule_answer(x >= *fraction)
            }
            Rule::Python { idle, slots, .. } => {
                let _slot = slots
                    .acquire()
                    .await
                    .map_err(|e| (HookFailure::Error, e.to_string()))?;
                let worker = idle.lock().await.pop();
                let mut worker = match worker {
                    Some(w) => w,
                    None => self
                        .spawn_worker()
                        .await
                        .map_err(|e| (HookFailure::Error, e))?,
                };
                // If this future is dropped (deadline), the worker is dropped and killed
                // (kill_on_drop): a hung handler cannot poison the pool.
                let line = self.ask(&mut worker, event).await?;
                idle.lock().await.push(worker);
                let reply: serde_json::Value = serde_json::from_str(&line).map_err(|_| {
                    (
                        HookFailure::Malformed,
                        "Pre-provisioning hook returned malformed output.".to_string(),
                    )
                })?;
                if let Some(err) = reply.get("error") {
                    return Err((
                        HookFailure::Error,
                        format!(
                            "Pre-provisioning hook failed with an error: {}",
                            err.as_str().unwrap_or("?")
                        ),
                    ));
                }
                parse_response(reply.get("ok").unwrap_or(&serde_json::Value::Null))
            }
            Rule::JsonStdio { command } => {
                self.counters[6].fetch_add(1, Ordering::Relaxed);
                let mut child = Command::new(&command[0])
                    .args(&command[1..])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(handler_log())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| {
                        (
                            HookFailure::Error,
                            format!("Pre-provisioning hook failed to start: {e}"),
                        )
                    })?;
                let body = serde_json::to_vec(event).unwrap_or_default();
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(&body).await;
                }
                let mut out = Vec::new();
                if let Some(mut stdout) = child.stdout.take() {
                    let _ = stdout.read_to_end(&mut out).await;
                }
                let status = child
                    .wait()
                    .await
                    .map_err(|e| (HookFailure::Error, e.to_string()))?;
                if !status.success() {
                    return Err((
                        HookFailure::Error,
                        format!("Pre-provisioning hook failed with an error: exit {status}"),
                    ));
                }
                let reply: serde_json::Value = serde_json::from_slice(&out).map_err(|_| {
                    (
                        HookFailure::Malformed,
                        "Pre-provisioning hook returned malformed output.".to_string(),
                    )
                })?;
                parse_response(&reply)
            }
            Rule::Http { client } => {
                let body = serde_json::to_vec(event).unwrap_or_default();
                let (status, reply) = client.post(body).await.map_err(|e| {
                    (
                        HookFailure::Error,
                        format!("Pre-provisioning hook failed with an error: {e}"),
                    )
                })?;
                if !(200..300).contains(&status) {
                    return Err((
                        HookFailure::Error,
                        format!("Pre-provisioning hook failed with an error: HTTP {status}"),
                    ));
                }
                let reply: serde_json::Value = serde_json::from_slice(&reply).map_err(|_| {
                    (
                        HookFailure::Malformed,
                        "Pre-provisioning hook returned malformed output.".to_string(),
                    )
                })?;
                parse_response(&reply)
            }
        }
    }

    async fn spawn_worker(&self) -> Result<Worker, String> {
        let Rule::Python {
            program,
            handler_file,
            handler,
            shim,
            ..
        } = &self.rule
        else {
            return Err("not a Python hook".into());
        };
        self.counters[6].fetch_add(1, Ordering::Relaxed);
        let mut child = Command::new(program)
            .arg(shim)
            .arg(handler_file)
            .arg(handler)
            .arg(self.settings.deadline.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(handler_log())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("Pre-provisioning hook failed to start {program}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }

    async fn ask(
        &self,
        worker: &mut Worker,
        event: &HookEvent,
    ) -> Result<String, (HookFailure, String)> {
        let mut line = serde_json::to_string(event).unwrap_or_default();
        line.push('\n');
        let broken = |e: std::io::Error| {
            (
                HookFailure::Error,
                format!("Pre-provisioning hook failed with an error: worker: {e}"),
            )
        };
        worker
            .stdin
            .write_all(line.as_bytes())
            .await
            .map_err(broken)?;
        worker.stdin.flush().await.map_err(broken)?;
        let mut reply = String::new();
        let n = worker.stdout.read_line(&mut reply).await.map_err(broken)?;
        if n == 0 {
            return Err((
                HookFailure::Error,
                "Pre-provisioning hook failed with an error: the handler process exited".into(),
            ));
        }
        Ok(reply)
    }
}

/// Where a handler's own logging goes: the terminal with `--log debug` (the local stand-in for
/// CloudWatch), else nowhere, so it cannot drown a run's progress output.
fn handler_log() -> Stdio {
    if tracing::enabled!(tracing::Level::DEBUG) {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// `{"allowProvisioning": true, "parameterOverrides": {...}}` -> allow with overrides.
fn parse_response(
    v: &serde_json::Value,
) -> Result<Option<BTreeMap<String, String>>, (HookFailure, String)> {
    let malformed = |why: &str| {
        (
            HookFailure::Malformed,
            format!("Pre-provisioning hook returned malformed output: {why}."),
        )
    };
    let obj = v
        .as_object()
        .ok_or_else(|| malformed("not a JSON object"))?;
    let mut overrides = BTreeMap::new();
    if let Some(o) = obj.get("parameterOverrides").filter(|o| !o.is_null()) {
        let o = o
            .as_object()
            .ok_or_else(|| malformed("parameterOverrides is not an object"))?;
        for (k, v) in o {
            let v = v
                .as_str()
                .ok_or_else(|| malformed("parameterOverrides values must be strings"))?;
            overrides.insert(k.clone(), v.to_string());
        }
    }
    Ok((obj.get("allowProvisioning") == Some(&serde_json::Value::Bool(true))).then_some(overrides))
}

fn read_list(
    file: &Path,
) -> std::io::Result<(Option<SystemTime>, std::collections::HashSet<String>)> {
    let modified = std::fs::metadata(file)?.modified().ok();
    let text = std::fs::read_to_string(file)?;
    Ok((
        modified,
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect(),
    ))
}

fn resolve_program(program: &str, base_dir: &Path) -> String {
    if program.contains('/') && Path::new(program).is_relative() {
        base_dir.join(program).display().to_string()
    } else {
        program.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(serial: &str) -> HookEvent {
        HookEvent::for_serial(serial)
    }

    #[tokio::test]
    async fn built_in_rules_decide_and_latency_beyond_the_deadline_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let rule: HookSettings =
            toml::from_str("kind = \"serial-prefix\"\nprefix = \"123456\"").unwrap();
        let hook = Hook::new("T", &rule, dir.path()).unwrap();
        assert!(matches!(
            hook.invoke(&event("123456001")).await,
            HookOutcome::Allow { .. }
        ));
        assert!(matches!(
            hook.invoke(&event("999")).await,
            HookOutcome::Reject {
                cause: HookFailure::Denied,
                status: 403,
                ..
            }
        ));

        let list = dir.path().join("serials.txt");
        std::fs::write(&list, "A1\nB2\n").unwrap();
        let rule: HookSettings =
            toml::from_str("kind = \"allow-list\"\nfile = \"serials.txt\"").unwrap();
        let hook = Hook::new("T", &rule, dir.path()).unwrap();
        assert!(matches!(
            hook.invoke(&event("B2")).await,
            HookOutcome::Allow { .. }
        ));
        assert!(matches!(
            hook.invoke(&event("C3")).await,
            HookOutcome::Reject { .. }
        ));

        let rule: HookSettings =
            toml::from_str("kind = \"deny-fraction\"\nfraction = 0.5\nseed = 3").unwrap();
        let hook = Hook::new("T", &rule, dir.path()).unwrap();
        let mut denied = 0;
        for _ in 0..400 {
            if matches!(hook.invoke(&event("x")).await, HookOutcome::Reject { .. }) {
                denied += 1;
            }
        }
        assert!((140..=260).contains(&denied), "{denied}");

        let slow: HookSettings =
            toml::from_str("kind = \"none\"\nlatency = \"2s\"\ndeadline = \"50ms\"").unwrap();
        let hook = Hook::new("T", &slow, dir.path()).unwrap();
        assert!(matches!(
            hook.invoke(&event("x")).await,
            HookOutcome::Reject {
                cause: HookFailure::Timeout,
                ..
            }
        ));
        assert_eq!(hook.stats().timeouts, 1);
    }

    #[test]
    fn settings_are_checked_and_http_is_loopback_only() {
        let dir = tempfile::tempdir().unwrap();
        let bad: HookSettings =
            toml::from_str("kind = \"http\"\nurl = \"http://192.0.2.1/hook\"").unwrap();
        assert!(
            Hook::new("T", &bad, dir.path())
                .err()
                .unwrap()
                .contains("loopback")
        );
        let bad: HookSettings = toml::from_str("kind = \"serial-prefix\"").unwrap();
        assert!(
            Hook::new("T", &bad, dir.path())
                .err()
                .unwrap()
                .contains("hooks.T.prefix")
        );
        let bad: HookSettings =
            toml::from_str("kind = \"allow-list\"\nfile = \"missing.txt\"").unwrap();
        assert!(
            Hook::new("T", &bad, dir.path())
                .err()
                .unwrap()
                .contains("missing.txt")
        );
        assert!(toml::from_str::<HookSettings>("kind = \"lambda\"").is_err());
        assert!(
            parse_response(
                &serde_json::json!({"allowProvisioning": true, "parameterOverrides": {"a": 1}})
            )
            .is_err()
        );
        assert_eq!(
            parse_response(&serde_json::json!({"allowProvisioning": "yes"})).unwrap(),
            None
        );
    }
}
