//! PLACEHOLDER (being written by another engineer): pre-provisioning hooks. Overwrite freely.
#![allow(dead_code, unused_variables)]
use std::collections::BTreeMap;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct HookSettings {
    pub kind: HookKind,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub parameter: Option<String>,
}
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    None,
    SerialPrefix,
    AllowList,
    DenyFraction,
    Command,
    Http,
}
#[derive(Debug, Clone, serde::Serialize)]
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
pub struct Hook;
impl Hook {
    pub fn new(
        template: &str,
        settings: &HookSettings,
        base_dir: &std::path::Path,
    ) -> Result<Hook, String> {
        Ok(Hook)
    }
    pub async fn invoke(&self, event: &HookEvent) -> HookOutcome {
        HookOutcome::Allow {
            parameter_overrides: BTreeMap::new(),
        }
    }
    pub async fn shutdown(&self) {}
}
