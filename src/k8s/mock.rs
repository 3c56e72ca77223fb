//! `k8s render --mock`: a standalone `fleetstorm mock` in the cluster that every shard connects to,
//! instead of one embedded mock per shard (docs/shards-merge-kubernetes.md, "A mock in the
//! cluster").
//!
//! The mock's PKI and the control plane's credentials come from Secrets the user creates; the
//! manifests only name them. The mock journals its registry into its PKI directory, which a
//! Secret volume cannot be, so an init container copies the Secret into an `emptyDir`: the
//! registry lives as long as the pod.

use serde_json::{Value, json};

use super::{Ctx, RenderError, config, container_security, pod_security, usage, variant_label};
use crate::device::CertificateMode;
use crate::scenario::{Plan, Target};

/// The Service's ports: MQTT over mutual TLS, the control plane, the metrics.
pub const MQTT_PORT: u16 = 8883;
pub const CONTROL_PORT: u16 = 8443;
/// Where the shards and the mock's init container find the PKI Secret.
pub const PKI_SECRET_DIR: &str = "/etc/fleetstorm/pki";
/// The mock's own, writable copy of it (its registry journal goes there).
pub const PKI_DIR: &str = "/var/lib/fleetstorm/pki";
/// The control plane's AWS shared credentials file, from `--control-secret` (key `credentials`).
pub const CREDENTIALS_FILE: &str = "/etc/fleetstorm/control/credentials";
/// The scenario's `[target.mock]` settings, as a `--config` file in the ConfigMap.
pub const SETTINGS_KEY: &str = "mock-settings.toml";
pub const SETTINGS_PATH: &str = "/etc/fleetstorm/mock-settings.toml";

/// The in-cluster mock's Service name, the shards' endpoint host.
pub(super) fn service_name(name: &str) -> String {
    format!("{name}-mock")
}

/// The settings file the in-cluster mock runs with: the scenario's `[target.mock]` (after
/// `--set`), the same for every variant, since one mock serves them all.
pub(super) fn settings(scenarios: &[Plan], path: &std::path::Path) -> Result<String, RenderError> {
    // As the embedded mock: when no device calls CreateKeysAndCertificate, no RSA pool.
    let csr_only = scenarios
        .iter()
        .all(|p| p.devices.certificate == CertificateMode::Csr);
    let mut text: Option<String> = None;
    for plan in scenarios {
        let Target::Mock { mock, .. } = &plan.target else {
            return Err(usage(format!(
                "--mock: {} targets an endpoint; --mock runs the mock of a scenario whose [target] is the mock",
                path.display()
            )));
        };
        let mut settings = mock.clone();
        if csr_only {
            settings.key_pool_size = 0;
        }
        let this = toml::to_string(&settings)
            .map_err(|e| config(format!("{}: [target.mock]: {e}", path.display())))?;
        match &text {
            None => text = Some(this),
            Some(first) if *first == this => {}
            Some(_) => {
                return Err(config(format!(
                    "--mock: {}{}: its [target.mock] differs from the first variant's; one mock in the cluster serves every variant",
                    path.display(),
                    variant_label(plan),
                )));
            }
        }
    }
    text.ok_or_else(|| config(format!("{}: no scenario", path.display())))
}

/// The mock's Deployment: one replica (one mock per PKI directory), its PKI copied from
/// `pki_secret`, its control plane served to the cluster only with `control_secret`'s keys.
pub(super) fn deployment(
    ctx: &Ctx,
    pki_secret: &str,
    control_secret: Option<&str>,
    memory_mib: u64,
) -> Value {
    let mut args = vec![
        "mock".to_string(),
        format!("--listen=0.0.0.0:{MQTT_PORT}"),
        format!("--pki={PKI_DIR}"),
        format!("--config={SETTINGS_PATH}"),
    ];
    let mut ports = vec![json!({ "name": "mqtt", "containerPort": MQTT_PORT })];
    let mut mounts = vec![
        json!({ "name": "pki", "mountPath": PKI_DIR }),
        json!({ "name": "scenario", "mountPath": SETTINGS_PATH, "subPath": SETTINGS_KEY, "readOnly": true }),
        json!({ "name": "tmp", "mountPath": "/tmp" }),
    ];
    let mut volumes = vec![
        json!({ "name": "pki-secret", "secret": { "secretName": pki_secret, "defaultMode": 0o440 } }),
        json!({ "name": "pki", "emptyDir": { "sizeLimit": "1Gi" } }),
        json!({ "name": "scenario", "configMap": { "name": format!("{}-scenario", ctx.name) } }),
        json!({ "name": "tmp", "emptyDir": { "sizeLimit": "256Mi" } }),
    ];
    match control_secret {
        Some(secret) => {
            // SigV4-checked against the Secret's keys: safe to serve to the cluster.
            args.push(format!("--control=0.0.0.0:{CONTROL_PORT}"));
            args.push(format!("--credentials={CREDENTIALS_FILE}"));
            args.push(format!("--metrics-listen=0.0.0.0:{}", super::METRICS_PORT));
            ports.push(json!({ "name": "control", "containerPort": CONTROL_PORT }));
            ports.push(json!({ "name": "metrics", "containerPort": super::METRICS_PORT }));
            let dir = CREDENTIALS_FILE.rsplit_once('/').map_or("/", |(d, _)| d);
            mounts.push(json!({ "name": "control", "mountPath": dir, "readOnly": true }));
            volumes.push(
                json!({ "name": "control", "secret": { "secretName": secret, "defaultMode": 0o440 } }),
            );
        }
        // Without credentials the control plane stays on the pod's loopback (kubectl
        // port-forward reaches it); the mock refuses anything wider.
        None => args.push(format!("--control=127.0.0.1:{CONTROL_PORT}")),
    }
    let resources = json!({ "cpu": "2", "memory": format!("{memory_mib}Mi") });
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ctx.metadata(&service_name(ctx.name), "mock"),
        "spec": {
            "replicas": 1,
            // Never two mocks on one registry, even for a moment.
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": ctx.labels("mock") },
            "template": {
                "metadata": { "labels": ctx.labels("mock") },
                "spec": {
                    "securityContext": pod_security(),
                    "initContainers": [{
                        "name": "pki",
                        "image": ctx.image,
                        "command": [
                            "/bin/sh",
                            "-c",
                            format!("cp {PKI_SECRET_DIR}/*.pem {PKI_SECRET_DIR}/*.key {PKI_DIR}/ && chmod 0600 {PKI_DIR}/*.key"),
                        ],
                        "securityContext": container_security(),
                        "volumeMounts": [
                            { "name": "pki-secret", "mountPath": PKI_SECRET_DIR, "readOnly": true },
                            { "name": "pki", "mountPath": PKI_DIR },
                        ],
                    }],
                    "containers": [{
                        "name": "mock",
                        "image": ctx.image,
                        "args": args,
                        "ports": ports,
                        "readinessProbe": { "tcpSocket": { "port": "mqtt" } },
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

/// The mock's Service: the shards' endpoint, and the control plane's and metrics' ports when
/// the control plane is served.
pub(super) fn service(ctx: &Ctx, control: bool) -> Value {
    let mut ports = vec![json!({ "name": "mqtt", "port": MQTT_PORT, "targetPort": "mqtt" })];
    if control {
        ports.push(json!({ "name": "control", "port": CONTROL_PORT, "targetPort": "control" }));
        ports.push(
            json!({ "name": "metrics", "port": super::METRICS_PORT, "targetPort": "metrics" }),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(&service_name(ctx.name), "mock"),
        "spec": { "selector": ctx.labels("mock"), "ports": ports },
    })
}

#[cfg(test)]
mod tests {
    use crate::mock_settings::MockSettings;

    /// The settings file is the scenario's `[target.mock]` as the mock reads it back.
    #[test]
    fn serialized_settings_read_back_as_the_same_settings() {
        let mut settings: MockSettings = toml::from_str(
            "region = \"eu-west-1\"\ntoken_ttl = \"90s\"\n[quotas]\nenabled = true\n[hooks.FleetProvisioningTemplate]\nlatency = \"600ms..1400ms\"\n",
        )
        .unwrap();
        settings.key_pool_size = 0;
        let text = toml::to_string(&settings).unwrap();
        let back: MockSettings = toml::from_str(&text).unwrap();
        assert_eq!(toml::to_string(&back).unwrap(), text);
        assert_eq!(back.region, "eu-west-1");
        assert_eq!(back.token_ttl, std::time::Duration::from_secs(90));
        assert_eq!(back.key_pool_size, 0);
        assert!(text.contains("[hooks.FleetProvisioningTemplate]"), "{text}");
    }
}
