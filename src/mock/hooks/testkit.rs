//! Test helpers shared by the hook tests here and in `http_hook`.

use super::HookEvent;

impl HookEvent {
    /// A test event from client `client` whose `SerialNumber` parameter is `serial`.
    pub(crate) fn for_serial(serial: &str) -> HookEvent {
        HookEvent {
            claim_certificate_id: "c".into(),
            certificate_id: "d".into(),
            certificate_pem: String::new(),
            template_arn: "arn".into(),
            client_id: "client".into(),
            parameters: [("SerialNumber".to_string(), serial.to_string())].into(),
        }
    }
}
