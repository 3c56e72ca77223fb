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
    let status = if active {
        CertificateStatus::Active
    } else {
        CertificateStatus::Inactive
    };
    state
        .registry
        .add_issued_certificate(&issued.certificate_id, &issued.pem, status);
    Ok(Some(json!({
        "certificateArn": state.certificate_arn(&issued.certificate_id),
        "certificateId": issued.certificate_id,
        "certificatePem": issued.pem,
        "keyPair": {
            "PublicKey": key.public_key_pem(),
            "PrivateKey": private_key_pem_like_aws(&key),
        },
    })))
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
