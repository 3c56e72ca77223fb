//! What `aws setup` and `aws teardown` share: the options and resource names, the file names
//! inside the output folder, the IAM role's fixed policies, and `aws-setup.json` (the record of
//! what setup created, which teardown reads). Its own file so that setup, its dry-run plan and
//! teardown each import it rather than each other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AwsError, Connection};

/// The state file inside the output folder.
pub const STATE_FILE: &str = "aws-setup.json";
/// File names inside the output folder.
pub const CLAIM_CERT_FILE: &str = "claim.pem.crt";
pub const CLAIM_KEY_FILE: &str = "claim.private.key";
pub const ROOT_CA_FILE: &str = "AmazonRootCA1.pem";
pub const SCENARIO_FILE: &str = "scenario.toml";
/// The managed policy AWS documents for fleet provisioning roles.
pub const REGISTRATION_POLICY_ARN: &str =
    "arn:aws:iam::aws:policy/service-role/AWSIoTThingsRegistration";
/// Trust policy: AWS IoT may assume the role.
pub const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"iot.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
/// Pre-provisioning hook payload version (the only one AWS defines).
pub const HOOK_PAYLOAD_VERSION: &str = "2020-04-01";

#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub conn: Connection,
    /// Resource name prefix.
    pub name: String,
    /// Output folder: claim certificate and key, root CA, scenario, state file.
    pub out: PathBuf,
    /// Template body file (default: the seed's template).
    pub template: Option<PathBuf>,
    pub hook_arn: Option<String>,
    /// Use this provisioning role; no IAM call is made.
    pub role_arn: Option<String>,
    /// Trust anchor for the scenario instead of Amazon Root CA 1.
    pub root_ca: Option<PathBuf>,
    pub dry_run: bool,
}

/// The names setup gives its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub prefix: String,
    pub role: String,
    pub template: String,
    pub policy: String,
}

impl Names {
    /// Names from `prefix` (1-27 characters of `[0-9A-Za-z_-]`, so the template name fits in 36).
    pub fn new(prefix: &str) -> Result<Names, AwsError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 27
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(AwsError::Usage(format!(
                "--name {prefix:?}: use 1-27 characters of [0-9A-Za-z_-]"
            )));
        }
        Ok(Names {
            prefix: prefix.to_string(),
            role: format!("{prefix}-provisioning-role"),
            template: format!("{prefix}-template"),
            policy: format!("{prefix}-claim-policy"),
        })
    }
}

/// One resource setup handled: its name or ID, ARN, and whether setup created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    #[serde(default)]
    pub arn: String,
    /// Created by a setup with this output folder (so teardown removes it).
    pub created: bool,
}

/// `aws-setup.json`: what setup made and where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetupState {
    pub region: String,
    pub account: String,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    pub role: Option<Resource>,
    pub template: Option<Resource>,
    pub policy: Option<Resource>,
    /// Claim certificates (ID in `name`); the last one is current.
    #[serde(default)]
    pub certificates: Vec<Resource>,
    /// The thing groups the template names (RegisterThing fails while one is missing).
    #[serde(default)]
    pub thing_groups: Vec<Resource>,
    pub endpoint: String,
    /// Files setup wrote in the output folder.
    #[serde(default)]
    pub files: Vec<String>,
}

impl SetupState {
    pub fn read(dir: &Path) -> Result<Option<SetupState>, AwsError> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AwsError::Input(format!("{}: {e}", path.display()))),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            AwsError::Input(format!(
                "{}: line {}, column {}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })
    }

    pub fn write(&self, dir: &Path) -> Result<(), AwsError> {
        let path = dir.join(STATE_FILE);
        let text =
            serde_json::to_string_pretty(self).map_err(|e| AwsError::Runtime(e.to_string()))?;
        std::fs::write(&path, text + "\n").map_err(|e| AwsError::io(&path, e))
    }
}
