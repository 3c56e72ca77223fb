//! Certificates: CreateKeysAndCertificate (signed by the mock's CA), describe, update, delete, list.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{ApiError, Call, Reply, epoch, next_token, put, valid_certificate_id};
use crate::mock::State;
use crate::mock::registry::CertificateStatus;
use crate::pki::private_key_pem_like_aws;

fn status_name(s: CertificateStatus) -> &'static str {
    match s {
        CertificateStatus::Active => "ACTIVE",
        CertificateStatus::Inactive => "INACTIVE",
        CertificateStatus::Revoked => "REVOKED",
        CertificateStatus::PendingActivation => "PENDING_ACTIVATION",
    }
}

fn checked_id(id: &str) -> Result<&str, ApiError> {
    if valid_certificate_id(id) {
        Ok(id)
    } else {
        Err(ApiError::invalid(format!(
            "Invalid certificateId {id:?}: 64 hexadecimal characters"
        )))
    }
}

/// POST /keys-and-certificate?setAsActive=
pub(super) async fn create(state: &Arc<State>, call: &Call) -> Reply {
    let active = call.flag("setAsActive", false)?;
    let worker = state.clone();
    // An RSA key may have to be generated (tens of milliseconds): off the async workers.
    let (key, issued) = tokio::task::spawn_blocking(move || {
        let key = worker
            .keys
            .take()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let issued = worker
            .pki
            .issue_device_certificate(&key)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok::<_, ApiError>((key, issued))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let mut out = record_issued(state, issued, active);
    out.insert(
        "keyPair".into(),
        json!({
            "PublicKey": key.public_key_pem(),
            "PrivateKey": private_key_pem_like_aws(&key),
        }),
    );
    Ok(Some(Value::Object(out)))
}

/// Register a certificate the mock's CA just signed (ACTIVE or INACTIVE); its ARN, ID and PEM
/// as both create operations answer them.
fn record_issued(
    state: &State,
    issued: crate::pki::IssuedCertificate,
    active: bool,
) -> serde_json::Map<String, Value> {
    let status = if active {
        CertificateStatus::Active
    } else {
        CertificateStatus::Inactive
    };
    state
        .registry
        .add_issued_certificate(&issued.certificate_id, &issued.pem, status);
    let mut out = serde_json::Map::new();
    out.insert(
        "certificateArn".into(),
        json!(state.certificate_arn(&issued.certificate_id)),
    );
    out.insert("certificateId".into(), json!(issued.certificate_id));
    out.insert("certificatePem".into(), json!(issued.pem));
    out
}

/// POST /certificates?setAsActive= `{"certificateSigningRequest": PEM}`
/// (CreateCertificateFromCsr): signed by the mock's CA, INACTIVE unless `setAsActive`.
pub(super) fn create_from_csr(state: &State, call: &Call) -> Reply {
    let active = call.flag("setAsActive", false)?;
    let body = call.json()?;
    let csr = match body.get("certificateSigningRequest") {
        Some(Value::String(csr)) if !csr.is_empty() => csr,
        _ => return Err(ApiError::invalid("certificateSigningRequest is required")),
    };
    let issued = state.pki.issue_from_csr(csr).map_err(|e| {
        ApiError::invalid(format!(
            "certificateSigningRequest is not a usable CSR: {e}"
        ))
    })?;
    Ok(Some(Value::Object(record_issued(state, issued, active))))
}

/// UNCONFIRMED: AWS's wording for a certificate it cannot read (the code is the model's).
fn invalid_certificate(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "CertificateValidationException", message)
}

/// The one certificate of `certificatePem`, DER.
fn one_certificate(pem: &str, field: &str) -> Result<Vec<u8>, ApiError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| invalid_certificate(format!("{field} is not a PEM certificate: {e}")))?;
    parsed
        .parse_x509()
        .map_err(|e| invalid_certificate(format!("{field} is not an X.509 certificate: {e}")))?;
    Ok(parsed.contents)
}

/// The status of a registered certificate: `status`, or ACTIVE with `setAsActive`, else
/// INACTIVE. AWS's other statuses (PENDING_TRANSFER, REGISTER_INACTIVE, ...) belong to flows
/// the mock does not serve.
fn register_status(
    call: &Call,
    body: &serde_json::Map<String, Value>,
) -> Result<CertificateStatus, ApiError> {
    let active = call.flag("setAsActive", false)?;
    match body.get("status") {
        None | Some(Value::Null) if active => Ok(CertificateStatus::Active),
        None | Some(Value::Null) => Ok(CertificateStatus::Inactive),
        Some(Value::String(s)) => match s.as_str() {
            "ACTIVE" => Ok(CertificateStatus::Active),
            "INACTIVE" => Ok(CertificateStatus::Inactive),
            "REVOKED" => Ok(CertificateStatus::Revoked),
            other => Err(ApiError::invalid(format!(
                "status {other:?}: the mock registers certificates ACTIVE, INACTIVE or REVOKED"
            ))),
        },
        Some(_) => Err(ApiError::invalid("status must be a string")),
    }
}

/// POST /certificate/register (`with_ca`) and /certificate/register-no-ca
/// (RegisterCertificate, RegisterCertificateWithoutCA). With a CA, the certificate must be
/// issued by the mock's CA (its issuer is the CA's subject; `caCertificatePem`, if given,
/// must be the mock's CA, the one CA the mock's account has registered). Registering a
/// certificate twice is ResourceAlreadyExistsException.
pub(super) fn register(state: &State, call: &Call, with_ca: bool) -> Reply {
    let body = call.json()?;
    let pem = match body.get("certificatePem") {
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        _ => return Err(ApiError::invalid("certificatePem is required")),
    };
    let status = register_status(call, &body)?;
    let der = one_certificate(&pem, "certificatePem")?;
    if with_ca {
        if let Some(Value::String(ca)) = body.get("caCertificatePem")
            && one_certificate(ca, "caCertificatePem")?.as_slice() != &state.pki.root_ca_der[..]
        {
            // UNCONFIRMED: AWS's code and wording for an unregistered CA.
            return Err(invalid_certificate(
                "caCertificatePem is not a CA certificate registered in this account (the mock's CA is its one)",
            ));
        }
        let issuer = |der: &[u8]| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, c)| c.issuer().as_raw().to_vec())
                .ok()
        };
        let subject = x509_parser::parse_x509_certificate(&state.pki.root_ca_der[..])
            .map(|(_, c)| c.subject().as_raw().to_vec())
            .ok();
        if issuer(&der) != subject {
            // UNCONFIRMED: AWS's wording.
            return Err(invalid_certificate(
                "The certificate is not issued by a CA certificate registered in this account (the mock's CA); RegisterCertificateWithoutCA takes it",
            ));
        }
    }
    let id = crate::pki::certificate_id(&der);
    let arn = state.certificate_arn(&id);
    if state.registry.certificate(&id).is_some() {
        return Err(ApiError::already_exists(
            "The certificate is already provisioned or registered",
            &id,
            &arn,
        ));
    }
    state.registry.add_issued_certificate(&id, &pem, status);
    Ok(Some(json!({ "certificateArn": arn, "certificateId": id })))
}

/// GET /certificates/{certificateId}
pub(super) fn describe(state: &State, id: &str) -> Reply {
    let id = checked_id(id)?;
    let cert = state
        .registry
        .certificate(id)
        .ok_or_else(|| ApiError::not_found(format!("The certificate {id} does not exist.")))?;
    let mut pem = cert.certificate_pem.clone();
    if pem.is_empty() && crate::pki::certificate_id(state.pki.claim_cert_der.as_ref()) == id {
        pem = state.pki.claim_cert_pem.clone();
    }
    let validity = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .ok()
        .and_then(|(_, p)| {
            let cert = p.parse_x509().ok()?;
            let v = cert.validity();
            Some(json!({
                "notBefore": v.not_before.timestamp(),
                "notAfter": v.not_after.timestamp(),
            }))
        });
    let created = epoch(cert.created_at);
    let mut description = serde_json::Map::new();
    description.insert("certificateArn".into(), json!(state.certificate_arn(id)));
    description.insert("certificateId".into(), json!(id));
    description.insert("status".into(), json!(status_name(cert.status)));
    description.insert("certificatePem".into(), json!(pem));
    description.insert("ownedBy".into(), json!(state.arn.account));
    description.insert("creationDate".into(), json!(created));
    description.insert("lastModifiedDate".into(), json!(created));
    description.insert("customerVersion".into(), json!(1));
    description.insert("generationId".into(), json!("1"));
    put(&mut description, "validity", validity);
    description.insert("certificateMode".into(), json!("DEFAULT"));
    Ok(Some(json!({ "certificateDescription": description })))
}

/// PUT /certificates/{certificateId}?newStatus=
pub(super) fn update(state: &State, id: &str, call: &Call) -> Reply {
    let id = checked_id(id)?;
    let status = match call.query("newStatus") {
        Some("ACTIVE") => CertificateStatus::Active,
        Some("INACTIVE") => CertificateStatus::Inactive,
        Some("REVOKED") => CertificateStatus::Revoked,
        Some("PENDING_ACTIVATION") => CertificateStatus::PendingActivation,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid newStatus {other:?}: ACTIVE, INACTIVE or REVOKED"
            )));
        }
        None => return Err(ApiError::invalid("newStatus is required")),
    };
    state.registry.update_certificate_status(id, status)?;
    if status != CertificateStatus::Active {
        let closed = state.close_sessions_of(id);
        if closed > 0 {
            tracing::info!(certificate = %id, ?status, closed, "UpdateCertificate: connections closed");
        }
    }
    Ok(None)
}

/// DELETE /certificates/{certificateId}?forceDelete=
pub(super) fn delete(state: &State, id: &str, call: &Call) -> Reply {
    let id = checked_id(id)?;
    let force = call.flag("forceDelete", false)?;
    state
        .registry
        .delete_certificate(id, force, &state.certificate_arn(id))?;
    Ok(None)
}

/// GET /certificates?pageSize=&marker=&isAscendingOrder=
pub(super) fn list(state: &State, call: &Call) -> Reply {
    let paging = call.paging("marker", "pageSize", 25)?;
    // AWS lists newest first unless asked for ascending order.
    let ascending = call.flag("isAscendingOrder", false)?;
    let page = state
        .registry
        .certificates_page(paging.after.as_deref(), ascending, paging.limit);
    let last = page.items.last().map(|c| c.order_key());
    let certificates: Vec<Value> = page
        .items
        .iter()
        .map(|c| {
            json!({
                "certificateArn": state.certificate_arn(&c.certificate_id),
                "certificateId": c.certificate_id,
                "status": status_name(c.status),
                "certificateMode": "DEFAULT",
                "creationDate": epoch(c.created_at),
            })
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("certificates".into(), Value::Array(certificates));
    put(
        &mut out,
        "nextMarker",
        next_token(page.more, last).map(Value::from),
    );
    Ok(Some(Value::Object(out)))
}
