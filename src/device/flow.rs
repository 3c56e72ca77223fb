//! The provisioning flow as a sans-IO state machine: the driver feeds it what happened on the
//! wire ([`Event`]) and gets back the one thing to do next ([`Action`]); no sockets, no clocks.

use std::io::Write as _;
use std::mem;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::classify::{self, Failure, FailureReason};
use super::codec::{reason_name, return_code_name};
use super::{AfterAction, CertificateMode, DeviceReport, DeviceSpec, Protocol, Provisioned};
use crate::protocol::{
    CreateCertificateFromCsrRequest, CreateCertificateFromCsrResponse,
    CreateKeysAndCertificateResponse, ErrorResponse, Format, RegisterThingRequest,
    RegisterThingResponse, RequestTopic,
};
use crate::stage::{Stage, StageTime};

/// Which certificate a connection presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Claim,
    Own,
}

/// What the driver does next. Borrowed from the flow: nothing is copied per step.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// TCP, TLS and CONNECT; answered by [`Event::ConnAck`] or [`Event::Timeout`] at `deadline`.
    Connect {
        identity: Identity,
        client_id: &'a str,
        deadline: Instant,
    },
    /// SUBSCRIBE at QoS 1; answered by [`Event::SubAck`].
    Subscribe {
        filters: [&'a str; 4],
        deadline: Instant,
    },
    /// PUBLISH a request at QoS 1; answered by [`Event::Response`] on one of `responses`
    /// (accepted, rejected).
    Request {
        topic: &'a str,
        payload: &'a [u8],
        responses: [&'a str; 2],
        deadline: Instant,
    },
    /// Close the claim session and build the TLS configuration of the new identity; answered by
    /// [`Event::Adopted`] or [`Event::Unusable`].
    Adopt {
        certificate_pem: &'a str,
        private_key_pem: &'a str,
    },
    /// PUBLISH telemetry at QoS 1; answered by [`Event::PubAck`].
    Publish {
        topic: &'a str,
        payload: &'a [u8],
        deadline: Instant,
    },
    /// Keep the session alive until `until`; answered by [`Event::Elapsed`].
    Idle { until: Instant },
    /// Provisioned: send DISCONNECT and report.
    Done,
    /// Failed: drop the connection and report.
    Failed,
}

/// What happened, in terms common to MQTT 3.1.1 and 5 (codes are read as the spec's
/// `protocol` defines them).
#[derive(Debug)]
pub enum Event {
    /// The CONNACK's code: 0 accepted, otherwise the 3.1.1 return code or MQTT 5 reason code.
    ConnAck(u8),
    /// A SUBACK: its first failure code (3.1.1: 0x80; MQTT 5: a reason code ≥ 0x80), if any.
    SubAck { refused: Option<u8> },
    /// A response PUBLISH: on the rejected topic or not, and its payload.
    Response {
        rejected: bool,
        payload: bytes::Bytes,
    },
    /// The new identity's TLS configuration is ready.
    Adopted,
    /// The new identity cannot be used (the detail says why).
    Unusable(String),
    /// A PUBACK: its reason code (always 0 in 3.1.1; MQTT 5 refuses with ≥ 0x80).
    PubAck(u8),
    /// An [`Action::Idle`] ran to its end.
    Elapsed,
    /// The awaited answer did not come by the action's deadline.
    Timeout,
    /// The run stopped: a registered device ends its stay or telemetry early.
    Released,
    /// The connection failed (classified by the driver, which saw the I/O error).
    Lost(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ConnectClaim,
    Subscribe,
    CreateCertificate,
    RegisterThing,
    Adopt,
    ConnectDevice,
    Stay,
    Telemetry,
    TelemetryWait,
    Done,
    Failed,
}

/// A device-generated key and its CSR, both PEM.
#[derive(Debug)]
pub struct Csr {
    pub key_pem: String,
    pub csr_pem: String,
}

/// Topics of one flow: each request topic, then its accepted and rejected topics.
const CREATE: usize = 0;
const REGISTER: usize = 3;

/// One device's flow from the claim connection to `Done` or `Failed`.
pub struct Flow<'a> {
    spec: &'a DeviceSpec,
    state: State,
    /// When the current stage started, and when its answer is due.
    started: Instant,
    deadline: Instant,
    topics: [String; 6],
    /// The request or telemetry payload being sent.
    payload: Vec<u8>,
    csr: Option<Csr>,
    token: String,
    provisioned: Provisioned,
    /// The client ID of the device's own connection, then its telemetry topic.
    client_id: String,
    telemetry_topic: String,
    telemetry_end: Instant,
    /// When the publish under way was due, and the next one is (a fixed schedule: a late
    /// publish does not push the later ones back).
    telemetry_due: Instant,
    next_telemetry: Instant,
    sequence: u64,
    stages: Vec<StageTime>,
    provisioned_at: Option<Instant>,
    failure: Option<Failure>,
}

impl<'a> Flow<'a> {
    /// A flow for `spec`; `csr` is the device's key and CSR in CSR mode.
    pub fn new(spec: &'a DeviceSpec, csr: Option<Csr>, now: Instant) -> Flow<'a> {
        let format = spec.payload;
        let create = match spec.mode {
            CertificateMode::Keys => RequestTopic::create_keys(format),
            CertificateMode::Csr => RequestTopic::create_from_csr(format),
        }
        .topic();
        let register = RequestTopic::register_thing(&spec.template, format).topic();
        let topics = [
            format!("{create}/accepted"),
            format!("{create}/rejected"),
            format!("{register}/accepted"),
            format!("{register}/rejected"),
            create,
            register,
        ];
        // Kept in the order [request, accepted, rejected] per API.
        let [ca, cr, ra, rr, c, r] = topics;
        Flow {
            spec,
            state: State::ConnectClaim,
            started: now,
            deadline: now + spec.timeouts.connect,
            topics: [c, ca, cr, r, ra, rr],
            payload: Vec::new(),
            csr,
            token: String::new(),
            provisioned: Provisioned::default(),
            client_id: String::new(),
            telemetry_topic: String::new(),
            telemetry_end: now,
            telemetry_due: now,
            next_telemetry: now,
            sequence: 0,
            stages: Vec::with_capacity(Stage::ALL.len()),
            provisioned_at: None,
            failure: None,
        }
    }

    /// The certificate the endpoint issued to this flow (empty until it did).
    pub fn certificate_id(&self) -> &str {
        &self.provisioned.certificate_id
    }

    /// The thing RegisterThing registered (empty until it did, or when the template names none).
    pub fn thing_name(&self) -> &str {
        &self.provisioned.thing_name
    }

    /// The stage under way (the one a failure now would be charged to).
    pub fn stage(&self) -> Stage {
        match self.state {
            State::ConnectClaim => Stage::ConnectClaim,
            State::Subscribe => Stage::Subscribe,
            State::CreateCertificate | State::Adopt => Stage::CreateCertificate,
            State::RegisterThing => Stage::RegisterThing,
            State::ConnectDevice => Stage::ConnectDevice,
            State::Stay | State::Telemetry | State::TelemetryWait | State::Done | State::Failed => {
                Stage::Telemetry
            }
        }
    }

    /// The action that starts the flow (and, after each event, the current one).
    pub fn action(&self) -> Action<'_> {
        match self.state {
            State::ConnectClaim => Action::Connect {
                identity: Identity::Claim,
                client_id: &self.spec.client_id,
                deadline: self.deadline,
            },
            State::Subscribe => Action::Subscribe {
                filters: [
                    &self.topics[CREATE + 1],
                    &self.topics[CREATE + 2],
                    &self.topics[REGISTER + 1],
                    &self.topics[REGISTER + 2],
                ],
                deadline: self.deadline,
            },
            State::CreateCertificate => self.request(CREATE),
            State::RegisterThing => self.request(REGISTER),
            State::Adopt => Action::Adopt {
                certificate_pem: &self.provisioned.certificate_pem,
                private_key_pem: &self.provisioned.private_key_pem,
            },
            State::ConnectDevice => Action::Connect {
                identity: Identity::Own,
                client_id: &self.client_id,
                deadline: self.deadline,
            },
            State::Telemetry => Action::Publish {
                topic: &self.telemetry_topic,
                payload: &self.payload,
                deadline: self.deadline,
            },
            State::Stay | State::TelemetryWait => Action::Idle {
                until: self.deadline,
            },
            State::Done => Action::Done,
            State::Failed => Action::Failed,
        }
    }

    fn request(&self, api: usize) -> Action<'_> {
        Action::Request {
            topic: &self.topics[api],
            payload: &self.payload,
            responses: [&self.topics[api + 1], &self.topics[api + 2]],
            deadline: self.deadline,
        }
    }

    /// Take in what happened at `now`; returns what to do next.
    pub fn handle(&mut self, now: Instant, event: Event) -> Action<'_> {
        if let Err(failure) = self.step(now, event) {
            self.state = State::Failed;
            self.failure = Some(failure);
        }
        self.action()
    }

    fn step(&mut self, now: Instant, event: Event) -> Result<(), Failure> {
        let stage = self.stage();
        match (self.state, event) {
            (State::Done | State::Failed, _) => {}
            (_, Event::Lost(failure)) => return Err(failure),
            (State::Stay | State::Telemetry | State::TelemetryWait, Event::Released) => {
                self.state = State::Done;
            }
            (_, Event::Timeout) => return Err(self.timeout(stage)),
            (State::ConnectClaim, Event::ConnAck(code)) => {
                accepted(stage, self.spec.protocol, code)?;
                self.finish(now);
                self.enter(State::Subscribe, now, self.spec.timeouts.subscribe);
            }
            (State::Subscribe, Event::SubAck { refused }) => {
                if let Some(code) = refused {
                    return Err(match self.spec.protocol {
                        Protocol::Mqtt311 => {
                            Failure::new(FailureReason::SubscribeRefused, "SUBACK failure")
                        }
                        Protocol::Mqtt5 => Failure::new(
                            FailureReason::SubscribeReason(code),
                            format!("SUBACK {code:#04x} {}", reason_name(code)),
                        ),
                    });
                }
                self.finish(now);
                self.payload.clear();
                let format = self.spec.payload;
                match &mut self.csr {
                    Some(csr) => {
                        let request = CreateCertificateFromCsrRequest {
                            certificate_signing_request: mem::take(&mut csr.csr_pem),
                        };
                        serialize(format, &mut self.payload, &request);
                    }
                    // An empty object: `{}`, or CBOR's empty map.
                    None => self.payload.extend_from_slice(match format {
                        Format::Json => b"{}",
                        Format::Cbor => &[0xA0],
                    }),
                }
                let timeout = self.spec.timeouts.create_certificate;
                self.enter(State::CreateCertificate, now, timeout);
            }
            (State::CreateCertificate, Event::Response { rejected, payload }) => {
                let p = &mut self.provisioned;
                match self.csr.take() {
                    None => {
                        let r: CreateKeysAndCertificateResponse =
                            response(self.spec, stage, rejected, &payload)?;
                        p.certificate_id = r.certificate_id;
                        p.certificate_pem = r.certificate_pem;
                        p.private_key_pem = r.private_key;
                        self.token = r.certificate_ownership_token;
                    }
                    Some(csr) => {
                        let r: CreateCertificateFromCsrResponse =
                            response(self.spec, stage, rejected, &payload)?;
                        p.certificate_id = r.certificate_id;
                        p.certificate_pem = r.certificate_pem;
                        p.private_key_pem = csr.key_pem;
                        self.token = r.certificate_ownership_token;
                    }
                }
                self.finish(now);
                let request = RegisterThingRequest {
                    certificate_ownership_token: Some(mem::take(&mut self.token)),
                    parameters: Some(self.spec.parameters.clone()),
                };
                self.payload.clear();
                serialize(self.spec.payload, &mut self.payload, &request);
                let timeout = self.spec.timeouts.register_thing;
                self.enter(State::RegisterThing, now, timeout);
            }
            (State::RegisterThing, Event::Response { rejected, payload }) => {
                let r: RegisterThingResponse = response(self.spec, stage, rejected, &payload)?;
                self.finish(now);
                self.client_id = if r.thing_name.is_empty() {
                    format!("{}-device", self.spec.client_id)
                } else {
                    r.thing_name.clone()
                };
                self.provisioned.thing_name = r.thing_name;
                self.provisioned.device_configuration = r.device_configuration;
                self.state = State::Adopt;
            }
            (State::Adopt, Event::Adopted) => {
                // The claim phase's buffers are not needed by a device that may stay for hours.
                self.payload = Vec::new();
                self.topics = Default::default();
                self.enter(State::ConnectDevice, now, self.spec.timeouts.connect);
            }
            (State::Adopt, Event::Unusable(detail)) => {
                return Err(Failure::new(
                    FailureReason::MalformedResponse(Stage::CreateCertificate),
                    detail,
                ));
            }
            (State::ConnectDevice, Event::ConnAck(code)) => {
                accepted(stage, self.spec.protocol, code)?;
                self.finish(now);
                self.provisioned_at = Some(now);
                let after = &self.spec.after;
                match after.action {
                    AfterAction::Disconnect => self.state = State::Done,
                    AfterAction::Stay => self.enter(State::Stay, now, after.duration),
                    AfterAction::Telemetry => {
                        self.telemetry_topic = after
                            .topic
                            .replace("{thingName}", &self.provisioned.thing_name)
                            .replace("{clientId}", &self.client_id);
                        self.payload = Vec::with_capacity(after.payload_bytes);
                        self.telemetry_end = now + after.duration;
                        self.next_telemetry = now;
                        self.telemetry(now);
                    }
                }
            }
            (State::Stay, Event::Elapsed) => self.state = State::Done,
            (State::Telemetry, Event::PubAck(reason)) => {
                if reason >= 0x80 {
                    return Err(Failure::new(
                        FailureReason::PubackRefused(stage, reason),
                        format!("PUBACK {reason:#04x} {}", reason_name(reason)),
                    ));
                }
                let due = self.telemetry_due;
                let acked = StageTime::scheduled(Stage::Telemetry, due, self.started, now);
                self.stages.push(acked);
                self.deadline = self.next_telemetry.min(self.telemetry_end);
                self.state = State::TelemetryWait;
            }
            (State::TelemetryWait, Event::Elapsed) => self.telemetry(now),
            (_, event) => {
                return Err(Failure::new(
                    FailureReason::Local(stage),
                    format!("unexpected {event:?}"),
                ));
            }
        }
        Ok(())
    }

    fn enter(&mut self, state: State, now: Instant, timeout: std::time::Duration) {
        self.state = state;
        self.started = now;
        self.deadline = now + timeout;
    }

    /// The current stage ended well at `now`.
    fn finish(&mut self, now: Instant) {
        self.stages
            .push(StageTime::between(self.stage(), self.started, now));
    }

    /// The next telemetry publish, or `Done` once the telemetry period is over.
    fn telemetry(&mut self, now: Instant) {
        if self.next_telemetry >= self.telemetry_end {
            self.state = State::Done;
            return;
        }
        let after = &self.spec.after;
        self.telemetry_due = self.next_telemetry;
        self.next_telemetry += after.interval;
        self.sequence += 1;
        self.payload.clear();
        let _ = write!(self.payload, "{{\"sequence\":{},\"pad\":\"", self.sequence);
        let pad = after.payload_bytes.saturating_sub(self.payload.len() + 2);
        self.payload.resize(self.payload.len() + pad, b'x');
        self.payload.extend_from_slice(b"\"}");
        self.enter(State::Telemetry, now, self.spec.timeouts.connect);
    }

    fn timeout(&self, stage: Stage) -> Failure {
        let detail = match self.state {
            State::Subscribe => "no SUBACK",
            State::CreateCertificate | State::RegisterThing => "no response",
            State::Telemetry => "no PUBACK",
            _ => "timed out",
        };
        Failure::new(FailureReason::Timeout(stage), detail)
    }

    /// The stages timed so far, when the device was provisioned, and the outcome.
    pub fn into_report(self) -> DeviceReport {
        let outcome = match self.failure {
            Some(failure) => Err(failure),
            None => Ok(self.provisioned),
        };
        DeviceReport {
            stages: self.stages,
            provisioned_at: self.provisioned_at,
            outcome,
            tally: super::Tally::default(),
        }
    }
}

/// A CONNACK code: 0 accepted; otherwise a 3.1.1 return code (labelled in decimal, as before
/// MQTT 5) or an MQTT 5 reason code (labelled in hex, as AWS and the spec write them).
fn accepted(stage: Stage, protocol: Protocol, code: u8) -> Result<(), Failure> {
    if code == 0 {
        return Ok(());
    }
    Err(match protocol {
        Protocol::Mqtt311 => Failure::new(
            FailureReason::ConnackRefused(stage, code),
            format!("CONNACK {}", return_code_name(code)),
        ),
        Protocol::Mqtt5 => Failure::new(
            FailureReason::ConnackReason(stage, code),
            format!("CONNACK {code:#04x} {}", reason_name(code)),
        ),
    })
}

/// An accepted response's body, or the failure a rejected one describes.
fn response<T: DeserializeOwned>(
    spec: &DeviceSpec,
    stage: Stage,
    rejected: bool,
    body: &[u8],
) -> Result<T, Failure> {
    if rejected {
        let error: ErrorResponse = decode(spec.payload, body, stage)?;
        return Err(classify::rejection(stage, error, &spec.classify));
    }
    decode(spec.payload, body, stage)
}

fn decode<T: DeserializeOwned>(format: Format, body: &[u8], stage: Stage) -> Result<T, Failure> {
    format
        .decode(body)
        .map_err(|e| Failure::new(FailureReason::MalformedResponse(stage), e))
}

/// Request bodies are plain structs of strings: serializing them cannot fail. Written into the
/// flow's reused buffer.
fn serialize(format: Format, buf: &mut Vec<u8>, value: &impl serde::Serialize) {
    let written = match format {
        Format::Json => serde_json::to_writer(&mut *buf, value).is_ok(),
        Format::Cbor => ciborium::into_writer(value, &mut *buf).is_ok(),
    };
    if !written {
        buf.clear();
    }
}

#[cfg(test)]
mod tests;
