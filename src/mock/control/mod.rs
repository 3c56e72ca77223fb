//! The AWS IoT control plane (REST, restJson1) over the mock's registry.
//!
//! The subset of the AWS IoT API that `fleetstorm aws setup/cleanup`, the seed's set-up
//! commands and a provisioning back end's own scripts use, with AWS's methods, paths, query
//! strings, JSON shapes and error shapes (the reference is botocore's `iot` service model):
//! provisioning templates, certificates (CreateKeysAndCertificate and CreateCertificateFromCsr
//! sign with the mock's CA; RegisterCertificate, RegisterCertificateWithoutCA), policies, their
//! versions and targets, things (created, updated) and their principals (both ways), thing
//! groups, thing types, DescribeEndpoint. It reads and changes the one registry the MQTT side uses:
//! what devices provision is listed and deleted here, and certificates, policies and templates
//! created here are what devices connect and provision with.
//!
//! Plain HTTP on its own port. With credentials ([`auth`], `fleetstorm mock --credentials`)
//! every request's SigV4 signature is checked; without them the `Authorization` header is
//! accepted whatever it holds (the CLI allows that on loopback only).

pub mod auth;
mod certificates;
mod error;
mod groups;
mod policies;
pub mod templates;
mod things;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use error::ApiError;

use super::State;

/// Largest request body read (a policy document is at most 404,600 characters).
const MAX_BODY: usize = 1 << 20;

/// What a handler returns: a JSON body, or `None` for AWS's empty 200.
type Reply = Result<Option<Value>, ApiError>;

/// One parsed request.
pub(crate) struct Call {
    pub method: Method,
    pub query: HashMap<String, String>,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Call {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A boolean query parameter (`true`/`false`), absent as `default`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.query(name) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(ApiError::invalid(format!(
                "Invalid value {other:?} for {name}: true or false"
            ))),
        }
    }

    /// A whole-number query parameter (`expectedVersion`), absent as `None`.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.query(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::invalid(format!("Invalid {name} {v:?}: a whole number")))
            })
            .transpose()
    }

    /// The JSON body (an empty body reads as `{}`).
    pub fn json(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::invalid("The request body must be a JSON object.")),
            Err(e) => Err(ApiError::invalid(format!("Invalid JSON body: {e}"))),
        }
    }

    /// Where a listing continues and how many to return: `token` is the name of the marker or
    /// next-token parameter, `size` of the page size parameter (1-250, as the model says).
    pub fn paging(&self, token: &str, size: &str, default: usize) -> Result<Paging, ApiError> {
        let limit = match self.query(size) {
            None => default,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=250).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "{size} must be a number from 1 to 250, not {s:?}"
                    )));
                }
            },
        };
        let after = match self.query(token) {
            None | Some("") => None,
            Some(t) => Some(
                hex::decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::invalid(format!("Invalid {token}: {t:?}")))?,
            ),
        };
        Ok(Paging { after, limit })
    }
}

/// A listing's position and page size.
pub(crate) struct Paging {
    pub after: Option<String>,
    pub limit: usize,
}

/// The token that continues a listing after the item with key `last`, if more follows. Hex, so
/// it fits both AWS's marker pattern (`[A-Za-z0-9+/]+={0,2}`) and a query string unescaped.
pub(crate) fn next_token(more: bool, last: Option<String>) -> Option<String> {
    last.filter(|_| more).map(hex::encode)
}

/// One page of an already sorted list of strings, and the token that continues it.
pub(crate) fn page_sorted(items: Vec<String>, paging: &Paging) -> (Vec<String>, Option<String>) {
    let mut rest = items
        .into_iter()
        .filter(|i| paging.after.as_ref().is_none_or(|a| i > a));
    let page: Vec<String> = rest.by_ref().take(paging.limit).collect();
    let more = rest.next().is_some();
    let token = next_token(more, page.last().cloned());
    (page, token)
}

/// A timestamp as restJson1 writes it: epoch seconds.
pub(crate) fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or_default()
}

/// Set `key` only when there is a value (AWS leaves absent members out).
pub(crate) fn put(map: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

/// Serve the control plane on `listener` until `shutdown` (under the settings' `[http]`
/// limits); `mqtt` is the MQTT listener's address, which DescribeEndpoint reports.
pub(crate) fn spawn(
    state: Arc<State>,
    listener: TcpListener,
    mqtt: SocketAddr,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let limits = state.settings.http;
    let service = hyper::service::service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, mqtt, request).await) }
    });
    tokio::spawn(crate::http::serve(
        listener,
        service,
        limits,
        shutdown,
        Some(std::time::Duration::from_secs(1)),
    ))
}

async fn handle(
    state: &Arc<State>,
    mqtt: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let request_id = hex::encode(rand::random::<[u8; 16]>());
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let reply = match Limited::new(body, MAX_BODY).collect().await {
        _ if !state.quotas.allow_control() => Err(ApiError::throttled()),
        Ok(collected) => {
            let body = collected.to_bytes();
            if let Some(credentials) = &state.credentials
                && let Err(e) = auth::verify(
                    credentials,
                    parts.method.as_str(),
                    &parts.uri,
                    &parts.headers,
                    &body,
                    SystemTime::now(),
                )
            {
                info!(method = %parts.method, %path, status = e.status, code = e.code, "control plane: refused");
                return e.response(&request_id);
            }
            let call = Call {
                method: parts.method.clone(),
                query: parse_query(parts.uri.query().unwrap_or("")),
                headers: parts.headers,
                body,
            };
            route(state, mqtt, &path, &call).await
        }
        Err(e) => Err(ApiError::invalid(format!("Unreadable request body: {e}"))),
    };
    match reply {
        Ok(body) => {
            info!(method = %parts.method, %path, status = 200, "control plane");
            let bytes = body
                .map(|v| serde_json::to_vec(&v).unwrap_or_default())
                .unwrap_or_default();
            let mut response = Response::builder()
                .status(200)
                .header("x-amzn-RequestId", &request_id);
            if !bytes.is_empty() {
                response = response.header("content-type", "application/json");
            }
            if path == "/endpoint" {
                // The port is not part of an AWS endpoint address; tools that need it find it here.
                response = response.header("x-fleetstorm-mqtt-port", mqtt.port());
            }
            response
                .body(Full::new(Bytes::from(bytes)))
                .unwrap_or_default()
        }
        Err(error) => {
            info!(method = %parts.method, %path, status = error.status, code = error.code, message = %error.message, "control plane");
            error.response(&request_id)
        }
    }
}

/// Query parameters, percent-decoded (`+` stays `+`: AWS clients escape it as `%2B`).
fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Percent-decoding of one path segment or query component. By hand: a dozen lines, and no
/// crate of ours has it (hyper leaves URIs encoded).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        if bytes[i] == b'%'
            && let Some(hex) = hex
        {
            let digit = |b: u8| (b as char).to_digit(16).unwrap_or_default() as u8;
            out.push(digit(hex[0]) * 16 + digit(hex[1]));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn route(state: &Arc<State>, mqtt: SocketAddr, path: &str, call: &Call) -> Reply {
    // `/attached-policies/{target}`: the target is an ARN whose `/` some clients leave unescaped.
    if let Some(target) = path.strip_prefix("/attached-policies/") {
        return match call.method {
            Method::POST => policies::list_attached(state, &percent_decode(target), call),
            _ => Err(ApiError::unknown_operation()),
        };
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let m = &call.method;
    match (segments.as_slice(), m) {
        (["provisioning-templates"], &Method::GET) => templates::list(state, call),
        (["provisioning-templates"], &Method::POST) => templates::create(state, call),
        (["provisioning-templates", name], &Method::GET) => templates::describe(state, name),
        (["provisioning-templates", name], &Method::PATCH) => templates::update(state, name, call),
        (["provisioning-templates", name], &Method::DELETE) => templates::delete(state, name),
        (["keys-and-certificate"], &Method::POST) => certificates::create(state, call).await,
        (["certificates"], &Method::POST) => certificates::create_from_csr(state, call),
        (["certificate", "register"], &Method::POST) => certificates::register(state, call, true),
        (["certificate", "register-no-ca"], &Method::POST) => {
            certificates::register(state, call, false)
        }
        (["certificates"], &Method::GET) => certificates::list(state, call),
        (["certificates", id], &Method::GET) => certificates::describe(state, id),
        (["certificates", id], &Method::PUT) => certificates::update(state, id, call),
        (["certificates", id], &Method::DELETE) => certificates::delete(state, id, call),
        (["policies"], &Method::GET) => policies::list(state, call),
        (["policies", name], &Method::POST) => policies::create(state, name, call),
        (["policies", name], &Method::GET) => policies::get(state, name),
        (["policies", name], &Method::DELETE) => policies::delete(state, name),
        (["policies", name, "version"], &Method::POST) => {
            policies::create_version(state, name, call)
        }
        (["policies", name, "version"], &Method::GET) => policies::list_versions(state, name),
        (["policies", name, "version", id], &Method::GET) => policies::get_version(state, name, id),
        (["policies", name, "version", id], &Method::PATCH) => {
            policies::set_default_version(state, name, id)
        }
        (["policies", name, "version", id], &Method::DELETE) => {
            policies::delete_version(state, name, id)
        }
        (["target-policies", name], &Method::PUT) => policies::attach(state, name, call),
        (["target-policies", name], &Method::POST) => policies::detach(state, name, call),
        (["policy-targets", name], &Method::POST) => policies::targets(state, name, call),
        (["things"], &Method::GET) => things::list(state, call),
        (["things", name], &Method::GET) => things::describe(state, name),
        (["things", name], &Method::POST) => things::create(state, name, call),
        (["things", name], &Method::PATCH) => things::update(state, name, call),
        (["things", name], &Method::DELETE) => things::delete(state, name, call),
        (["things", name, "principals-v2"], &Method::GET) => {
            things::principals_v2(state, name, call)
        }
        (["things", name, "thing-groups"], &Method::GET) => {
            groups::groups_for_thing(state, name, call)
        }
        (["thing-groups"], &Method::GET) => groups::list_groups(state, call),
        (["thing-groups", "addThingToThingGroup"], &Method::PUT) => {
            groups::membership(state, call, true)
        }
        (["thing-groups", "removeThingFromThingGroup"], &Method::PUT) => {
            groups::membership(state, call, false)
        }
        (["thing-groups", name], &Method::POST) => groups::create_group(state, name, call),
        (["thing-groups", name], &Method::GET) => groups::describe_group(state, name),
        (["thing-groups", name], &Method::DELETE) => groups::delete_group(state, name, call),
        (["thing-groups", name, "things"], &Method::GET) => {
            groups::things_in_group(state, name, call)
        }
        (["thing-types"], &Method::GET) => groups::list_types(state, call),
        (["thing-types", name], &Method::POST) => groups::create_type(state, name, call),
        (["thing-types", name], &Method::GET) => groups::describe_type(state, name),
        (["thing-types", name], &Method::DELETE) => groups::delete_type(state, name),
        (["thing-types", name, "deprecate"], &Method::POST) => {
            groups::deprecate_type(state, name, call)
        }
        (["things", name, "principals"], &Method::GET) => things::principals(state, name, call),
        (["things", name, "principals"], &Method::PUT) => things::attach(state, name, call),
        (["things", name, "principals"], &Method::DELETE) => things::detach(state, name, call),
        (["principals", "things"], &Method::GET) => things::principal_things(state, call),
        (["endpoint"], &Method::GET) => things::endpoint(mqtt, call),
        _ => Err(ApiError::unknown_operation()),
    }
}

/// The certificate ID in a certificate ARN (`arn:aws:iot:REGION:ACCOUNT:cert/ID`).
pub(crate) fn certificate_id_of(arn: &str) -> Result<&str, ApiError> {
    arn.strip_prefix("arn:")
        .and_then(|rest| rest.rsplit_once(":cert/"))
        .map(|(_, id)| id)
        .filter(|id| valid_certificate_id(id))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{arn:?} is not a certificate ARN (arn:aws:iot:REGION:ACCOUNT:cert/ID); the mock's control plane knows certificates only"
            ))
        })
}

/// 64 hex digits (botocore `CertificateId`).
pub(crate) fn valid_certificate_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl State {
    pub(crate) fn certificate_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:cert/{id}",
            self.arn.region, self.arn.account
        )
    }

    pub(crate) fn iot_arn(&self, kind: &str, name: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:{kind}/{name}",
            self.arn.region, self.arn.account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_plus_and_stray_percent_signs() {
        assert_eq!(percent_decode("arn%3Aaws%3Aiot"), "arn:aws:iot");
        assert_eq!(percent_decode("a+b%2Bc"), "a+b+c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn certificate_arns_give_their_id_and_other_targets_are_refused() {
        let id = "ab".repeat(32);
        assert_eq!(
            certificate_id_of(&format!("arn:aws:iot:eu-west-1:1:cert/{id}")).unwrap(),
            id
        );
        let err = certificate_id_of("arn:aws:iot:eu-west-1:1:thinggroup/g").unwrap_err();
        assert_eq!(err.code, "InvalidRequestException");
        assert!(certificate_id_of(&format!("arn:aws:iot:r:1:cert/{}", "x".repeat(64))).is_err());
    }

    #[test]
    fn tokens_are_hex_and_round_trip() {
        let token = next_token(true, Some("a key/with+odd:chars".into())).unwrap();
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let call = Call {
            method: Method::GET,
            query: parse_query(&format!("nextToken={token}&maxResults=3")),
            headers: Default::default(),
            body: Bytes::new(),
        };
        let p = call.paging("nextToken", "maxResults", 50).unwrap();
        assert_eq!(p.after.as_deref(), Some("a key/with+odd:chars"));
        assert_eq!(p.limit, 3);
        assert_eq!(next_token(false, Some("x".into())), None);
    }

    #[test]
    fn page_sizes_outside_the_model_range_are_refused() {
        for bad in ["0", "251", "x"] {
            let call = Call {
                method: Method::GET,
                query: parse_query(&format!("pageSize={bad}")),
                headers: Default::default(),
                body: Bytes::new(),
            };
            let err = call.paging("marker", "pageSize", 25).err().unwrap();
            assert_eq!(err.status, 400);
        }
    }
}
