//! fleetstorm: a load-testing harness for AWS IoT Core fleet provisioning by claim,
//! with a faithful local mock endpoint.

#[cfg(feature = "aws")]
pub mod aws;
pub mod cli;
pub mod compare;
pub mod device;
pub mod exit;
pub mod exporter;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod http;
pub mod iot;
pub mod k8s;
pub mod limits;
pub mod live;
pub mod merge;
pub mod metrics;
pub mod mock;
pub mod mock_settings;
pub mod output;
pub mod pki;
pub mod protocol;
pub mod report;
pub mod results;
pub mod scenario;
pub mod shard;
pub mod signals;
pub mod stage;
pub mod tls;
pub mod tui;

/// "line L, column C: message" for a TOML parse error in `text`.
pub fn toml_error_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}, column {column} ({source}): {message}")
        }
        None => message.to_string(),
    }
}
