//! The fleet-provisioning MQTT API: topics and payloads, shared by the devices and the mock.
//! Facts and sources: `spec/aws-fleet-provisioning.md` §1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// ALPN protocol the AWS SDKs offer on port 443.
pub const ALPN_MQTT_CA: &[u8] = b"x-amzn-mqtt-ca";

/// Largest MQTT payload AWS IoT Core accepts (128 KB); larger publishes close the connection.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// Payload encoding, chosen by the topic suffix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Cbor,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Cbor => "cbor",
        }
    }

    fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "cbor" => Some(Format::Cbor),
            _ => None,
        }
    }

    pub fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            // Serialising our own plain structs cannot fail.
            Format::Json => serde_json::to_vec(value).unwrap_or_default(),
            Format::Cbor => {
                let mut out = Vec::new();
                let _ = ciborium::into_writer(value, &mut out);
                out
            }
        }
    }

    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Format::Cbor => ciborium::from_reader(bytes).map_err(|e| e.to_string()),
        }
    }
}

/// The three operations of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    CreateKeysAndCertificate,
    CreateCertificateFromCsr,
    RegisterThing,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::CreateKeysAndCertificate => "CreateKeysAndCertificate",
            Api::CreateCertificateFromCsr => "CreateCertificateFromCsr",
            Api::RegisterThing => "RegisterThing",
        }
    }
}

/// A request topic, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTopic {
    pub api: Api,
    pub format: Format,
    /// Only for RegisterThing.
    pub template: Option<String>,
}

impl RequestTopic {
    pub fn create_keys(format: Format) -> Self {
        RequestTopic {
            api: Api::CreateKeysAndCertificate,
            format,
            template: None,
        }
    }
    pub fn create_from_csr(format: Format) -> Self {
        RequestTopic {
            api: Api::CreateCertificateFromCsr,
            format,
            template: None,
        }
    }
    pub fn register_thing(template: &str, format: Format) -> Self {
        RequestTopic {
            api: Api::RegisterThing,
            format,
            template: Some(template.to_string()),
        }
    }

    /// Parse a PUBLISH topic; `None` when it is not one of the API request topics.
    pub fn parse(topic: &str) -> Option<RequestTopic> {
        if let Some(fmt) = topic.strip_prefix("$aws/certificates/create/") {
            return Some(Self::create_keys(Format::parse(fmt)?));
        }
        if let Some(fmt) = topic.strip_prefix("$aws/certificates/create-from-csr/") {
            return Some(Self::create_from_csr(Format::parse(fmt)?));
        }
        let rest = topic.strip_prefix("$aws/provisioning-templates/")?;
        let (template, fmt) = rest.split_once("/provision/")?;
        if !valid_template_name(template) {
            return None;
        }
        Some(Self::register_thing(template, Format::parse(fmt)?))
    }

    /// The topic the request is published to.
    pub fn topic(&self) -> String {
        let fmt = self.format.as_str();
        match self.api {
            Api::CreateKeysAndCertificate => format!("$aws/certificates/create/{fmt}"),
            Api::CreateCertificateFromCsr => format!("$aws/certificates/create-from-csr/{fmt}"),
            Api::RegisterThing => format!(
                "$aws/provisioning-templates/{}/provision/{fmt}",
                self.template.as_deref().unwrap_or_default()
            ),
        }
    }

    pub fn accepted(&self) -> String {
        format!("{}/accepted", self.topic())
    }

    pub fn rejected(&self) -> String {
        format!("{}/rejected", self.topic())
    }
}

/// Template names are 1–36 characters of `[0-9A-Za-z_-]`.
pub fn valid_template_name(name: &str) -> bool {
    (1..=36).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeysAndCertificateResponse {
    pub certificate_id: String,
    pub certificate_pem: String,
    pub private_key: String,
    pub certificate_ownership_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCertificateFromCsrRequest {
    pub certificate_signing_request: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCertificateFromCsrResponse {
    pub certificate_ownership_token: String,
    pub certificate_id: String,
    pub certificate_pem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegisterThingRequest {
    #[serde(default)]
    pub certificate_ownership_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterThingResponse {
    /// Always present, possibly empty (`spec/aws-fleet-provisioning.md` §1.4).
    #[serde(default)]
    pub device_configuration: serde_json::Map<String, serde_json::Value>,
    pub thing_name: String,
}

/// The payload of every `…/rejected` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    pub status_code: u16,
    pub error_code: String,
    pub error_message: String,
}

impl ErrorResponse {
    pub fn new(status_code: u16, error_code: &str, error_message: impl Into<String>) -> Self {
        ErrorResponse {
            status_code,
            error_code: error_code.to_string(),
            error_message: error_message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics_round_trip() {
        for t in [
            RequestTopic::create_keys(Format::Json),
            RequestTopic::create_from_csr(Format::Cbor),
            RequestTopic::register_thing("FleetProvisioningTemplate", Format::Json),
        ] {
            assert_eq!(RequestTopic::parse(&t.topic()), Some(t.clone()));
            assert!(t.accepted().ends_with("/accepted"));
        }
        assert_eq!(
            RequestTopic::register_thing("T", Format::Json).rejected(),
            "$aws/provisioning-templates/T/provision/json/rejected"
        );
        assert_eq!(
            RequestTopic::parse("$aws/certificates/create/json/accepted"),
            None
        );
        assert_eq!(RequestTopic::parse("$aws/certificates/create/xml"), None);
        assert_eq!(
            RequestTopic::parse("$aws/provisioning-templates/a b/provision/json"),
            None
        );
        assert_eq!(RequestTopic::parse("device/x"), None);
    }

    #[test]
    fn payloads_use_aws_field_names() {
        let r = CreateKeysAndCertificateResponse {
            certificate_id: "a".into(),
            certificate_pem: "b".into(),
            private_key: "c".into(),
            certificate_ownership_token: "d".into(),
        };
        assert_eq!(
            String::from_utf8(Format::Json.encode(&r)).unwrap(),
            r#"{"certificateId":"a","certificatePem":"b","privateKey":"c","certificateOwnershipToken":"d"}"#
        );
        let reg = RegisterThingResponse {
            device_configuration: Default::default(),
            thing_name: "t".into(),
        };
        assert_eq!(
            String::from_utf8(Format::Json.encode(&reg)).unwrap(),
            r#"{"deviceConfiguration":{},"thingName":"t"}"#
        );
        let back: RegisterThingResponse = Format::Cbor.decode(&Format::Cbor.encode(&reg)).unwrap();
        assert_eq!(back, reg);
    }
}
