//! The log filter: the user's `--log` / `RUST_LOG` directives, with the AWS SDK's and HTTP
//! stack's wire logs capped at `debug`.
//!
//! At `trace` the SDK's orchestrator and SigV4 signer log every request whole: the
//! `x-amz-security-token` session token and the signed `Authorization` header included. So a
//! broad `trace` (or `aws_sdk_iot=trace`) does not reach them: each crate below is capped at
//! `debug` unless the filter names it (or a longer target inside it) itself, e.g.
//! `trace,aws_smithy_runtime=trace`.

/// Crates (target prefixes) whose `trace` level logs requests with their credentials.
const WIRE: [&str; 9] = [
    "aws_smithy_runtime",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sigv4",
    "aws_runtime",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
];

/// The target a directive names (`target[span{field}]=level`), or `None` for a bare level.
fn directive_target(directive: &str) -> Option<&str> {
    let name = directive.split('=').next().unwrap_or("");
    let name = name.split('[').next().unwrap_or("").trim();
    if name.is_empty()
        || (!directive.contains('=') && name.parse::<tracing::Level>().is_ok())
        || name.eq_ignore_ascii_case("off")
    {
        return None;
    }
    Some(name)
}

/// `spec` with `CRATE=debug` appended for every wire crate it does not name.
pub fn with_wire_caps(spec: &str) -> String {
    let named: Vec<&str> = spec.split(',').filter_map(directive_target).collect();
    let mut out = spec.trim().trim_end_matches(',').to_string();
    for crate_name in WIRE {
        // Named itself (or inside it, or an enclosing prefix such as `aws_smithy`): the user's.
        let asked = named
            .iter()
            .any(|t| t.starts_with(crate_name) || crate_name.starts_with(t));
        if !asked {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(crate_name);
            out.push_str("=debug");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broad_trace_gets_every_wire_crate_capped() {
        let f = with_wire_caps("trace");
        assert!(f.starts_with("trace,"), "{f}");
        for c in WIRE {
            assert!(f.contains(&format!(",{c}=debug")), "{c}: {f}");
        }
        assert!(tracing_subscriber::EnvFilter::try_new(&f).is_ok(), "{f}");
        let f = with_wire_caps("fleetstorm=trace,aws_sdk_iot=trace");
        assert!(f.contains("aws_smithy_runtime=debug"), "{f}");
    }

    #[test]
    fn a_crate_named_in_the_filter_keeps_its_level() {
        let f = with_wire_caps("trace,aws_smithy_runtime=trace");
        assert!(!f.contains("aws_smithy_runtime=debug"), "{f}");
        assert!(f.contains("aws_sigv4=debug"), "{f}");
        let f = with_wire_caps("info,aws_sigv4[sign]=trace");
        assert!(!f.contains("aws_sigv4=debug"), "{f}");
        let f = with_wire_caps("hyper");
        assert!(
            !f.contains("hyper=debug") && !f.contains("hyper_util=debug"),
            "{f}"
        );
        assert!(f.contains("h2=debug"), "{f}");
        assert_eq!(directive_target("debug"), None);
        assert_eq!(directive_target("off"), None);
        assert_eq!(directive_target("h2=trace"), Some("h2"));
    }
}
