//! SigV4 on the control plane: credentials given to the mock (`fleetstorm mock --credentials
//! FILE`), every request's signature checked against them.
//!
//! The signature is recomputed with `aws-sigv4` (the AWS SDK for Rust's signer) over the request
//! as received, with the date, region and service of its `Authorization` header, and compared in
//! constant time. Refusals are AWS's: 403 `MissingAuthenticationTokenException` (no
//! `Authorization` header), `UnrecognizedClientException` (an access key the mock was not
//! given), `InvalidSignatureException` (a signature that does not match, or a date more than
//! [`MAX_SKEW`] from the mock's clock: "Signature expired").

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::ApiError;

/// How far a request's `X-Amz-Date` may be from the mock's clock (AWS: 5 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Access key ID -> secret access key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    keys: BTreeMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Credentials")
            .field("access_key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// Read an AWS shared credentials file (`~/.aws/credentials` format: `[profile]` sections
    /// with `aws_access_key_id` and `aws_secret_access_key`); every profile's key is accepted.
    pub fn from_file(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Credentials::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The INI subset the AWS CLI writes, by hand: a dozen lines, and no crate of ours reads
    /// INI.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut keys = BTreeMap::new();
        let mut section: Option<(usize, String, Option<String>, Option<String>)> = None;
        let mut finish = |s: Option<(usize, String, Option<String>, Option<String>)>| match s {
            None => Ok(()),
            Some((_, _, Some(id), Some(secret))) => {
                keys.insert(id, secret);
                Ok(())
            }
            Some((line, name, _, _)) => Err(format!(
                "line {line}: profile [{name}] needs aws_access_key_id and aws_secret_access_key"
            )),
        };
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                finish(section.take())?;
                section = Some((n + 1, name.trim().to_string(), None, None));
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "line {}: expected key = value, got {line:?}",
                    n + 1
                ));
            };
            let Some(current) = section.as_mut() else {
                return Err(format!("line {}: {line:?} before any [profile]", n + 1));
            };
            let value = value.trim().to_string();
            match key.trim() {
                "aws_access_key_id" => current.2 = Some(value),
                "aws_secret_access_key" => current.3 = Some(value),
                _ => {}
            }
        }
        finish(section)?;
        if keys.is_empty() {
            return Err("no profile with aws_access_key_id and aws_secret_access_key".into());
        }
        Ok(Credentials { keys })
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=ID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=HEX`.
struct Authorization<'a> {
    access_key: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let scope: Vec<&str> = credential?.split('/').collect();
    let [access_key, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return None;
    };
    Some(Authorization {
        access_key,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

/// `YYYYMMDDTHHMMSSZ` (SigV4's `X-Amz-Date`), by hand: `time`'s parser is a feature we do not
/// build.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(num(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(6..8)? as u8).ok()?;
    let t = time::Time::from_hms(num(9..11)? as u8, num(11..13)? as u8, num(13..15)? as u8).ok()?;
    let secs = date.with_time(t).assume_utc().unix_timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn format_amz_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let d =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

fn missing() -> ApiError {
    ApiError::new(
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
}

fn mismatch() -> ApiError {
    ApiError::new(
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    )
}

/// Equal bytes, in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check one request's SigV4 signature against `credentials` at `now`.
pub(crate) fn verify(
    credentials: &Credentials,
    method: &str,
    uri: &hyper::Uri,
    headers: &hyper::HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), ApiError> {
    let Some(value) = headers.get(hyper::header::AUTHORIZATION) else {
        return Err(missing());
    };
    let auth = value
        .to_str()
        .ok()
        .and_then(parse_authorization)
        .ok_or_else(|| {
            ApiError::new(
                403,
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters (AWS4-HMAC-SHA256).",
            )
        })?;
    let Some(secret) = credentials.keys.get(auth.access_key) else {
        return Err(ApiError::new(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    let date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_amz_date)
        .ok_or_else(mismatch)?;
    let (early, late) = (now - MAX_SKEW, now + MAX_SKEW);
    if date < early {
        return Err(ApiError::new(
            403,
            "InvalidSignatureException",
            format!(
                "Signature expired: {} is now earlier than {} ({} - 5 min.)",
                format_amz_date(date),
                format_amz_date(early),
                format_amz_date(now)
            ),
        ));
    }
    if date > late {
        return Err(ApiError::new(
            403,
            "InvalidSignatureException",
            format!(
                "Signature not yet current: {} is still later than {} ({} + 5 min.)",
                format_amz_date(date),
                format_amz_date(late),
                format_amz_date(now)
            ),
        ));
    }
    // The signed headers as received; the signer adds `host` and `x-amz-date` itself.
    if !auth.signed_headers.contains(&"host") {
        return Err(mismatch());
    }
    let mut signed = Vec::new();
    for name in &auth.signed_headers {
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(mismatch());
        }
        for v in values {
            signed.push((*name, v));
        }
    }
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(mismatch)?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let full_uri = format!("http://{host}{path}");
    let identity = aws_credential_types::Credentials::new(
        auth.access_key,
        secret.as_str(),
        None,
        None,
        "fleetstorm mock --credentials",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(date)
        .settings(settings)
        .build()
        .map_err(|_| mismatch())?
        .into();
    let request = SignableRequest::new(
        method,
        full_uri,
        signed.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| mismatch())?;
    let output = sign(request, &params).map_err(|_| mismatch())?;
    if constant_time_eq(output.signature().as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# a comment\n[default]\naws_access_key_id = AKIDMOCK\naws_secret_access_key = secret/one\n\n[other]\naws_access_key_id=AKIDTWO\naws_secret_access_key=two\nregion = eu-west-1\n";

    fn creds() -> Credentials {
        Credentials::parse(FILE).unwrap()
    }

    /// A request signed by aws-sigv4 as an SDK signs it.
    fn signed(secret: &str, at: SystemTime, body: &[u8]) -> (hyper::Uri, hyper::HeaderMap) {
        let uri: hyper::Uri = "/policies/p%3Aq?marker=ab&pageSize=3".parse().unwrap();
        let identity =
            aws_credential_types::Credentials::new("AKIDMOCK", secret, None, None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("iot")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "POST",
            "http://127.0.0.1:8443/policies/p%3Aq?marker=ab&pageSize=3",
            [("content-type", "application/json")].into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut headers = hyper::HeaderMap::new();
        headers.insert("host", "127.0.0.1:8443".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        for (name, value) in instructions.headers() {
            headers.insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        (uri, headers)
    }

    #[test]
    fn every_profile_of_a_shared_credentials_file_is_a_key() {
        let c = creds();
        assert_eq!(
            c.keys.get("AKIDMOCK").map(String::as_str),
            Some("secret/one")
        );
        assert_eq!(c.keys.get("AKIDTWO").map(String::as_str), Some("two"));
        assert!(!format!("{c:?}").contains("secret/one"));
        let err = Credentials::parse("[p]\naws_access_key_id = A\n").unwrap_err();
        assert!(err.contains("line 1: profile [p] needs"), "{err}");
        assert!(Credentials::parse("").unwrap_err().contains("no profile"));
        assert!(
            Credentials::parse("key = v\n")
                .unwrap_err()
                .contains("before any [profile]")
        );
    }

    #[test]
    fn a_request_signed_with_the_key_passes_and_any_change_is_refused() {
        let now = SystemTime::now();
        let body = br#"{"policyDocument":"{}"}"#;
        let (uri, headers) = signed("secret/one", now, body);
        verify(&creds(), "POST", &uri, &headers, body, now).unwrap();
        // Another body, method or secret: the signature does not match.
        let e = verify(&creds(), "POST", &uri, &headers, b"{}", now).unwrap_err();
        assert_eq!((e.status, e.code), (403, "InvalidSignatureException"));
        let e = verify(&creds(), "PUT", &uri, &headers, body, now).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        let (uri2, wrong) = signed("not-the-secret", now, body);
        let e = verify(&creds(), "POST", &uri2, &wrong, body, now).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
    }

    #[test]
    fn missing_unknown_and_skewed_signatures_get_awss_codes() {
        // Whole seconds, as X-Amz-Date writes them.
        let now = parse_amz_date("20261207T190000Z").unwrap();
        let (uri, headers) = signed("secret/one", now, b"");
        let e = verify(&creds(), "POST", &uri, &hyper::HeaderMap::new(), b"", now).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token"
            )
        );
        let only =
            Credentials::parse("[x]\naws_access_key_id=OTHER\naws_secret_access_key=s\n").unwrap();
        let e = verify(&only, "POST", &uri, &headers, b"", now).unwrap_err();
        assert_eq!((e.status, e.code), (403, "UnrecognizedClientException"));
        // 5 minutes either way pass; a second more is refused.
        let at = |now: SystemTime| verify(&creds(), "POST", &uri, &headers, b"", now);
        at(now + MAX_SKEW).unwrap();
        at(now - MAX_SKEW).unwrap();
        let e = at(now + MAX_SKEW + Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        assert!(
            e.message.starts_with("Signature expired: "),
            "{}",
            e.message
        );
        assert!(e.message.ends_with(" - 5 min.)"), "{}", e.message);
        let e = at(now - MAX_SKEW - Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        assert!(
            e.message.starts_with("Signature not yet current: "),
            "{}",
            e.message
        );
    }

    #[test]
    fn amz_dates_round_trip() {
        let t = parse_amz_date("20261207T190102Z").unwrap();
        assert_eq!(format_amz_date(t), "20261207T190102Z");
        assert!(parse_amz_date("2026-12-07T19:01:02Z").is_none());
        assert!(parse_amz_date("20261307T190102Z").is_none());
    }
}
