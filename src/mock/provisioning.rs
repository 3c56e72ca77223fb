//! The three fleet-provisioning APIs. A connection answers its requests in order (the SDKs
//! correlate by topic only, `spec/aws-fleet-provisioning.md` §1.1): in its own task when nothing on
//! the request's path waits, otherwise through one worker task, so a slow request (hook, injected
//! latency, RSA key) never blocks the connection's reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::info;

use super::State;
use super::control::templates::Unusable;
use super::faults::Verdict;
use super::hooks::{HookEvent, HookOutcome};
use crate::iot::template::{RenderContext, RenderError};
use crate::pki::private_key_pem_like_aws;
use crate::protocol::{
    Api, CreateCertificateFromCsrRequest, CreateCertificateFromCsrResponse,
    CreateKeysAndCertificateResponse, ErrorResponse, Format, RegisterThingRequest,
    RegisterThingResponse, RequestTopic,
};

pub(super) struct Job {
    pub request: RequestTopic,
    pub payload: Bytes,
}

pub(super) enum Response {
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    /// A fault: close the connection instead of answering.
    Close,
}

/// Who is asking.
pub(super) struct Requester<'a> {
    pub client_id: &'a str,
    pub claim_certificate_id: &'a str,
    pub connection: u64,
}

/// What a handler tells the log beside accepted/rejected.
type Outcome = Result<(Vec<u8>, String), ErrorResponse>;

/// Whether a request can be answered in the connection's own task: nothing in its path waits
/// (no injected latency or fault, no pre-provisioning hook, no key generation on the blocking
/// pool), so a hand-off to a worker task would cost two channel hops and wake-ups for nothing.
pub(super) fn answers_inline(state: &State, request: &RequestTopic) -> bool {
    if !state.settings.faults.for_api(request.api).is_quiet() {
        return false;
    }
    match request.api {
        Api::CreateCertificateFromCsr => true,
        Api::RegisterThing => request
            .template
            .as_deref()
            .is_none_or(|t| !state.hooks.contains_key(t)),
        Api::CreateKeysAndCertificate => false,
    }
}

/// Answers one connection's requests in order, for requests that may wait (see
/// [`answers_inline`]); once started it answers every later request of its connection too.
pub(super) async fn worker(
    state: Arc<State>,
    client_id: String,
    claim_certificate_id: String,
    connection: u64,
    mut jobs: mpsc::Receiver<Job>,
    out: mpsc::Sender<Response>,
) {
    let requester = Requester {
        client_id: &client_id,
        claim_certificate_id: &claim_certificate_id,
        connection,
    };
    let mut dice = None;
    // Requests queued when the connection closed are still answered (see `session::Worker`);
    // once the mock stops, none is started (the one under way completes).
    loop {
        let job = tokio::select! {
            biased;
            _ = state.stopping.cancelled() => return,
            job = jobs.recv() => job,
        };
        let Some(job) = job else { return };
        let Some(response) = answer(&state, &requester, &mut dice, job).await else {
            continue;
        };
        if matches!(response, Response::Close) {
            return;
        }
        if out.send(response).await.is_err() {
            // The connection is gone: the response is lost, as AWS's is.
            state.stats.undelivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The response to one request (`None`: an injected fault drops it). `dice` is the connection's
/// fault RNG, made at its first use.
pub(super) async fn answer(
    state: &Arc<State>,
    requester: &Requester<'_>,
    dice: &mut Option<rand::rngs::StdRng>,
    job: Job,
) -> Option<Response> {
    let started = Instant::now();
    let format = job.request.format;
    let api = job.request.api;
    let outcome = if !state.quotas.allow_api(api) {
        state.stats.throttled[api as usize].fetch_add(1, Ordering::Relaxed);
        let q = state.quotas.settings();
        Err(ErrorResponse::new(
            q.throttle_status,
            &q.throttle_error_code,
            "Rate exceeded",
        ))
    } else {
        let faults = state.settings.faults.for_api(api);
        let verdict = if faults.is_quiet() {
            Verdict::Answer
        } else {
            // The connection's seeded dice, made at its first fault roll.
            let dice = dice.get_or_insert_with(|| state.settings.faults.rng(requester.connection));
            let delay = faults.latency.sample(dice);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            faults.roll(dice)
        };
        match verdict {
            Verdict::Disconnect => {
                info!(api = api.as_str(), client_id = %requester.client_id, outcome = "fault: disconnect");
                return Some(Response::Close);
            }
            Verdict::DropResponse => {
                info!(api = api.as_str(), client_id = %requester.client_id, outcome = "fault: response dropped");
                return None;
            }
            Verdict::Error => Err(ErrorResponse::new(
                if faults.error_status == 0 {
                    500
                } else {
                    faults.error_status
                },
                if faults.error_code.is_empty() {
                    "InternalFailure"
                } else {
                    &faults.error_code
                },
                "Injected fault.",
            )),
            Verdict::Answer => match api {
                Api::CreateKeysAndCertificate => create_keys(state, requester, &job).await,
                Api::CreateCertificateFromCsr => create_from_csr(state, requester, &job),
                Api::RegisterThing => register_thing(state, requester, &job).await,
            },
        }
    };
    let index = api as usize;
    let elapsed_us = started.elapsed().as_micros() as u64;
    let (topic, payload) = match outcome {
        Ok((payload, detail)) => {
            state.stats.accepted[index].fetch_add(1, Ordering::Relaxed);
            info!(api = api.as_str(), client_id = %requester.client_id, outcome = "accepted", %detail, elapsed_us);
            (job.request.accepted(), payload)
        }
        Err(error) => {
            state.stats.rejected[index].fetch_add(1, Ordering::Relaxed);
            info!(
                api = api.as_str(),
                client_id = %requester.client_id,
                outcome = "rejected",
                status = error.status_code,
                code = %error.error_code,
                message = %error.error_message,
                elapsed_us
            );
            (job.request.rejected(), format.encode(&error))
        }
    };
    Some(Response::Publish { topic, payload })
}

fn invalid_payload(message: impl Into<String>) -> ErrorResponse {
    // UNCONFIRMED: AWS's code for an undecodable request payload is not documented.
    ErrorResponse::new(400, "InvalidPayload", message)
}

fn internal(message: impl std::fmt::Display) -> ErrorResponse {
    ErrorResponse::new(500, "InternalFailure", message.to_string())
}

/// Records a freshly issued certificate as pending under a new ownership token; returns the
/// token and the log detail.
fn add_pending(
    state: &State,
    requester: &Requester<'_>,
    issued: &crate::pki::IssuedCertificate,
) -> (String, String) {
    // AWS tokens are opaque; SDKs never parse them.
    let token = hex::encode(rand::random::<[u8; 32]>());
    state.registry.add_pending_certificate(
        &issued.certificate_id,
        &issued.pem,
        requester.claim_certificate_id,
        &token,
        state.settings.token_ttl,
    );
    (token, format!("certificate {}", issued.certificate_id))
}

async fn create_keys(state: &Arc<State>, requester: &Requester<'_>, job: &Job) -> Outcome {
    // The request is an empty payload or an empty object (`{}` / CBOR 0xA0): accept both.
    if !job.payload.is_empty() {
        let value: serde_json::Value = match job.request.format {
            Format::Json => serde_json::from_slice(&job.payload)
                .map_err(|e| invalid_payload(format!("Invalid JSON payload: {e}")))?,
            Format::Cbor => ciborium::from_reader(&job.payload[..])
                .map_err(|e| invalid_payload(format!("Invalid CBOR payload: {e}")))?,
        };
        if !value.is_object() {
            return Err(invalid_payload(
                "The request payload must be empty or an object.",
            ));
        }
    }
    let issue = |state: &State, key: rcgen::KeyPair| {
        let issued = state.pki.issue_device_certificate(&key).map_err(internal)?;
        Ok::<_, ErrorResponse>((private_key_pem_like_aws(&key), issued))
    };
    // A pooled (or cheap P-256) key is signed for right here (one ECDSA signature, tens of
    // microseconds); only an empty RSA pool sends the request to a blocking thread, where the
    // key is generated inline.
    let (key_pem, issued) = match state.keys.try_take() {
        Some(key) => issue(state, key)?,
        None => {
            let worker_state = state.clone();
            tokio::task::spawn_blocking(move || {
                let key = worker_state.keys.take().map_err(internal)?;
                issue(&worker_state, key)
            })
            .await
            .map_err(internal)??
        }
    };
    let (token, detail) = add_pending(state, requester, &issued);
    let response = CreateKeysAndCertificateResponse {
        certificate_id: issued.certificate_id,
        certificate_pem: issued.pem,
        private_key: key_pem,
        certificate_ownership_token: token,
    };
    Ok((job.request.format.encode(&response), detail))
}

fn create_from_csr(state: &Arc<State>, requester: &Requester<'_>, job: &Job) -> Outcome {
    let request: CreateCertificateFromCsrRequest = job
        .request
        .format
        .decode(&job.payload)
        .map_err(|e| invalid_payload(format!("Invalid request payload: {e}")))?;
    // Verifying the CSR and signing with the CA's P-256 key take tens of microseconds: inline,
    // which is cheaper than a hand-off to the blocking pool and back.
    let issued = state
        .pki
        .issue_from_csr(&request.certificate_signing_request)
        // UNCONFIRMED: AWS's exact errorCode for a bad CSR; status 400 is documented behaviour.
        .map_err(|e| ErrorResponse::new(400, "InvalidCsr", e.to_string()))?;
    let (token, detail) = add_pending(state, requester, &issued);
    let response = CreateCertificateFromCsrResponse {
        certificate_ownership_token: token,
        certificate_id: issued.certificate_id,
        certificate_pem: issued.pem,
    };
    Ok((job.request.format.encode(&response), detail))
}

async fn register_thing(state: &Arc<State>, requester: &Requester<'_>, job: &Job) -> Outcome {
    let format = job.request.format;
    let request: RegisterThingRequest = format
        .decode(&job.payload)
        .map_err(|e| invalid_payload(format!("Invalid request payload: {e}")))?;
    let token = request.certificate_ownership_token.unwrap_or_default();
    let bad_token =
        |message: &str| ErrorResponse::new(400, "InvalidCertificateOwnershipToken", message);
    let certificate_id = state.registry.check_token(&token).map_err(|e| match e {
        super::registry::TokenError::Empty => {
            bad_token("Certificate ownership token cannot be empty.")
        }
        // UNCONFIRMED wording for unknown and expired tokens.
        super::registry::TokenError::Unknown => {
            bad_token("Certificate ownership token is invalid.")
        }
        super::registry::TokenError::Expired => {
            bad_token("Certificate ownership token has expired.")
        }
    })?;
    let template_name = job.request.template.as_deref().unwrap_or_default();
    let template = state
        .templates
        .for_provisioning(template_name)
        .map_err(|why| match why {
            // UNCONFIRMED: code for an unknown template.
            Unusable::Missing => ErrorResponse::new(
                404,
                "ResourceNotFoundException",
                format!("Template {template_name} does not exist."),
            ),
            // UNCONFIRMED: AWS's answer for a disabled template.
            Unusable::Disabled => ErrorResponse::new(
                400,
                "InvalidRequestException",
                format!("Template {template_name} is disabled."),
            ),
        })?;
    let mut parameters: BTreeMap<String, String> = request.parameters.unwrap_or_default();
    if let Some(hook) = state.hooks.get(template_name) {
        let certificate_pem = state
            .registry
            .certificate_pem(&certificate_id)
            .unwrap_or_default();
        let event = HookEvent {
            claim_certificate_id: requester.claim_certificate_id.to_owned(),
            certificate_id: certificate_id.clone(),
            certificate_pem,
            template_arn: format!(
                "arn:aws:iot:{}:{}:provisioningtemplate/{template_name}",
                state.settings.region, state.settings.account
            ),
            client_id: requester.client_id.to_owned(),
            parameters: parameters.clone(),
        };
        match hook.invoke(&event).await {
            // parameterOverrides replace request parameters before the template runs.
            HookOutcome::Allow {
                parameter_overrides,
            } => parameters.extend(parameter_overrides),
            HookOutcome::Reject {
                status,
                error_code,
                message,
                ..
            } => return Err(ErrorResponse::new(status, &error_code, message)),
        }
    }
    let rendered = template
        .render(&RenderContext {
            parameters: &parameters,
            certificate_id: &certificate_id,
        })
        .map_err(|e: RenderError| ErrorResponse::new(400, e.error_code(), e.message()))?;
    state
        .registry
        .apply(&token, &rendered)
        .map_err(|e| ErrorResponse::new(e.status, e.code, e.message))?;
    let thing_name = rendered
        .thing
        .as_ref()
        .map(|t| t.thing_name.clone())
        .unwrap_or_default();
    let detail = format!("thing {thing_name}, certificate {certificate_id}");
    let response = RegisterThingResponse {
        device_configuration: rendered.device_configuration,
        thing_name,
    };
    Ok((format.encode(&response), detail))
}
