//! The provisioning flow as a sans-IO state machine: the driver feeds it what happened on the
//! wire ([`Event`]) and gets back the one thing to do next ([`Action`]); no sockets, no clocks.
//!
//! The device's profile decides its timeouts, its subscriptions (once per connection, or around
//! each step) and how a failed connect is retried (the backoff waits are [`Action::Wait`]s).
//! A failure anywhere else ends the flow: the whole-flow retry is the fleet's.

use std::io::Write as _;
use std::mem;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::classify::{self, Failure, FailureReason};
use super::codec::{reason_name, return_code_name};
use super::profile::{self, Subscriptions};
use super::{AfterAction, CertificateMode, DeviceReport, DeviceSpec, Protocol, Provisioned, Tally};
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
        filters: &'a [String],
        deadline: Instant,
    },
    /// UNSUBSCRIBE; answered by [`Event::UnsubAck`].
    Unsubscribe {
        filters: &'a [String],
        deadline: Instant,
    },
    /// PUBLISH a request at QoS 1; answered by [`Event::Response`] on one of `responses`
    /// (accepted, rejected), which must come with the PUBACK when `await_puback`.
    Request {
        topic: &'a str,
        payload: &'a [u8],
        responses: [&'a str; 2],
        deadline: Instant,
        await_puback: bool,
    },
    /// Wait until `until` (the backoff before connecting again, no session up); answered by
    /// [`Event::Elapsed`].
    Wait { until: Instant },
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
    /// An UNSUBACK.
    UnsubAck,
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
    /// An [`Action::Idle`] or [`Action::Wait`] ran to its end.
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
    /// The backoff before the next claim connect.
    ClaimBackoff,
    /// Per connection: every response topic; per step: CreateCertificate's.
    Subscribe,
    CreateCertificate,
    /// Per step only: around RegisterThing.
    UnsubscribeCreate,
    SubscribeRegister,
    RegisterThing,
    UnsubscribeRegister,
    Adopt,
    ConnectDevice,
    DeviceBackoff,
    Stay,
    Telemetry,
    TelemetryWait,
    Done,
    Failed,
}

/// Where a device's connect backoff stands: waits so far (since the last reset) and the last
/// one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    step: u32,
    previous: Duration,
}

/// A device-generated key and its CSR, both PEM.
#[derive(Debug)]
pub struct Csr {
    pub key_pem: String,
    pub csr_pem: String,
}

/// The steps' indexes: topics `[create accepted, create rejected, register accepted, register
/// rejected, create request, register request]`, so a step's responses are `2 * step..` and
/// both steps' the first four.
const CREATE: usize = 0;
const REGISTER: usize = 1;

/// One device's flow from the claim connection to `Done` or `Failed`.
pub struct Flow<'a> {
    spec: &'a DeviceSpec,
    state: State,
    /// When the current stage started (a connect's first try), and when its answer is due.
    started: Instant,
    deadline: Instant,
    /// Connects made for the connect under way (retries included).
    connects: u32,
    /// The connect backoff: waits so far (from the last reset) and the last one (two fields,
    /// not a [`Backoff`]: the u32 packs beside `connects`).
    backoff_step: u32,
    backoff_prev: Duration,
    /// When the session up now came up (for the backoff's `reset_after`).
    connected_at: Option<Instant>,
    /// The jitter source's state ([`profile::unit`]).
    jitter: u64,
    tally: Tally,
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
        let format = spec.profile.payload;
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
        Flow {
            spec,
            state: State::ConnectClaim,
            started: now,
            deadline: now + spec.profile.timeouts.connect,
            connects: 0,
            backoff_step: 0,
            backoff_prev: Duration::ZERO,
            connected_at: None,
            jitter: 0,
            tally: Tally::default(),
            topics,
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

    /// This flow with its jitter source at `state` (the same state, the same draws).
    pub fn with_jitter(mut self, state: u64) -> Flow<'a> {
        self.jitter = state;
        self
    }

    /// The jitter source's state now (a later attempt continues from it).
    pub fn jitter(&self) -> u64 {
        self.jitter
    }

    /// This flow with the connect backoff where the device's last attempt left it, as a client
    /// object kept across the application's retries keeps it; with `reset_after = 0` each
    /// connection's backoff starts from the minimum (a backoff context per connect), so
    /// nothing is carried.
    pub fn with_backoff(mut self, backoff: Backoff) -> Flow<'a> {
        if !self.spec.profile.connect_retry.reset_after.is_zero() {
            self.backoff_step = backoff.step;
            self.backoff_prev = backoff.previous;
        }
        self
    }

    /// The connect backoff now (a later attempt continues from it, [`Flow::with_backoff`]).
    pub fn backoff(&self) -> Backoff {
        Backoff {
            step: self.backoff_step,
            previous: self.backoff_prev,
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
            State::ConnectClaim | State::ClaimBackoff => Stage::ConnectClaim,
            State::Subscribe | State::SubscribeRegister => Stage::Subscribe,
            State::CreateCertificate | State::UnsubscribeCreate | State::Adopt => {
                Stage::CreateCertificate
            }
            State::RegisterThing | State::UnsubscribeRegister => Stage::RegisterThing,
            State::ConnectDevice | State::DeviceBackoff => Stage::ConnectDevice,
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
                filters: match self.spec.profile.subscriptions {
                    Subscriptions::PerConnection => &self.topics[..4],
                    Subscriptions::PerStep => self.responses(CREATE),
                },
                deadline: self.deadline,
            },
            State::SubscribeRegister => Action::Subscribe {
                filters: self.responses(REGISTER),
                deadline: self.deadline,
            },
            State::UnsubscribeCreate => Action::Unsubscribe {
                filters: self.responses(CREATE),
                deadline: self.deadline,
            },
            State::UnsubscribeRegister => Action::Unsubscribe {
                filters: self.responses(REGISTER),
                deadline: self.deadline,
            },
            State::ClaimBackoff | State::DeviceBackoff => Action::Wait {
                until: self.deadline,
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

    /// A step's accepted and rejected topics.
    fn responses(&self, step: usize) -> &[String] {
        &self.topics[2 * step..2 * step + 2]
    }

    fn request(&self, step: usize) -> Action<'_> {
        Action::Request {
            topic: &self.topics[4 + step],
            payload: &self.payload,
            responses: [&self.topics[2 * step], &self.topics[2 * step + 1]],
            deadline: self.deadline,
            await_puback: match step {
                CREATE => self.spec.profile.await_create_certificate_puback,
                _ => self.spec.profile.await_register_thing_puback,
            },
        }
    }

    /// Take in what happened at `now`; returns what to do next.
    pub fn handle(&mut self, now: Instant, event: Event) -> Action<'_> {
        let connecting = matches!(self.state, State::ConnectClaim | State::ConnectDevice);
        if connecting && matches!(event, Event::ConnAck(_) | Event::Timeout | Event::Lost(_)) {
            self.connects += 1;
            self.tally.connects += 1;
        }
        if let Err(failure) = self.step(now, event) {
            match connecting.then(|| self.reconnect_pause(&failure)).flatten() {
                Some(pause) => {
                    self.state = match self.state {
                        State::ConnectClaim => State::ClaimBackoff,
                        _ => State::DeviceBackoff,
                    };
                    self.deadline = now + pause;
                }
                None => {
                    // A session lost in a step ends here: one that lasted `reset_after` leaves
                    // the next attempt's backoff at the minimum.
                    self.session_ended(now);
                    self.state = State::Failed;
                    self.failure = Some(failure);
                }
            }
        }
        self.action()
    }

    /// The wait before connecting again after `failure`, when the profile retries it.
    fn reconnect_pause(&mut self, failure: &Failure) -> Option<Duration> {
        let profile = &self.spec.profile;
        let class = failure.reason.class();
        let step = self.backoff_step + 1;
        let jitter = &mut self.jitter;
        let pause = profile.connect_pause(class, self.connects, step, self.backoff_prev, || {
            profile::unit(jitter)
        })?;
        self.backoff_step = step;
        self.backoff_prev = pause;
        Some(pause)
    }

    /// The session up ended at `now`: one that lasted `reset_after` starts the connect backoff
    /// afresh.
    fn session_ended(&mut self, now: Instant) {
        if let Some(up) = self.connected_at.take()
            && now.saturating_duration_since(up) >= self.spec.profile.connect_retry.reset_after
        {
            self.backoff_step = 0;
            self.backoff_prev = Duration::ZERO;
        }
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
            (State::ClaimBackoff | State::DeviceBackoff, Event::Elapsed) => {
                self.state = match self.state {
                    State::ClaimBackoff => State::ConnectClaim,
                    _ => State::ConnectDevice,
                };
                self.deadline = now + self.timeouts().connect;
            }
            (State::ConnectClaim, Event::ConnAck(code)) => {
                accepted(stage, self.spec.protocol, code)?;
                self.finish(now);
                self.connected_at = Some(now);
                self.enter(State::Subscribe, now, self.timeouts().subscribe);
            }
            // Per step: the second SUBACK's wait is a `subscribe` stage time of its own, and
            // RegisterThing is timed from its request.
            (State::SubscribeRegister, Event::SubAck { refused }) => {
                suback(self.spec.protocol, refused)?;
                self.finish(now);
                let timeout = self.timeouts().register_thing;
                self.enter(State::RegisterThing, now, timeout);
            }
            (State::UnsubscribeCreate, Event::UnsubAck) => {
                self.enter(State::SubscribeRegister, now, self.timeouts().subscribe);
            }
            (State::UnsubscribeRegister, Event::UnsubAck) => self.state = State::Adopt,
            (State::Subscribe, Event::SubAck { refused }) => {
                suback(self.spec.protocol, refused)?;
                self.finish(now);
                self.payload.clear();
                let format = self.spec.profile.payload;
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
                let timeout = self.timeouts().create_certificate;
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
                self.tally.certificates_issued += 1;
                self.finish(now);
                let request = RegisterThingRequest {
                    certificate_ownership_token: Some(mem::take(&mut self.token)),
                    parameters: Some(self.spec.parameters.clone()),
                };
                self.payload.clear();
                serialize(self.spec.profile.payload, &mut self.payload, &request);
                let timeouts = self.timeouts();
                match self.spec.profile.subscriptions {
                    Subscriptions::PerConnection => {
                        self.enter(State::RegisterThing, now, timeouts.register_thing);
                    }
                    // The UNSUBACK's wait is in no stage (the device's total has it).
                    Subscriptions::PerStep => {
                        self.enter(State::UnsubscribeCreate, now, timeouts.subscribe);
                    }
                }
            }
            (State::RegisterThing, Event::Response { rejected, payload }) => {
                let r: RegisterThingResponse = response(self.spec, stage, rejected, &payload)?;
                self.tally.registered += 1;
                self.finish(now);
                self.client_id = if r.thing_name.is_empty() {
                    format!("{}-device", self.spec.client_id)
                } else {
                    r.thing_name.clone()
                };
                self.provisioned.thing_name = r.thing_name;
                self.provisioned.device_configuration = r.device_configuration;
                match self.spec.profile.subscriptions {
                    Subscriptions::PerConnection => self.state = State::Adopt,
                    Subscriptions::PerStep => {
                        self.state = State::UnsubscribeRegister;
                        self.deadline = now + self.timeouts().subscribe;
                    }
                }
            }
            (State::Adopt, Event::Adopted) => {
                // The claim phase's buffers are not needed by a device that may stay for hours.
                self.payload = Vec::new();
                self.topics = Default::default();
                self.session_ended(now);
                self.connects = 0;
                self.enter(State::ConnectDevice, now, self.timeouts().connect);
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
                self.connected_at = Some(now);
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
        self.enter(State::Telemetry, now, self.timeouts().connect);
    }

    fn timeouts(&self) -> super::Timeouts {
        self.spec.profile.timeouts
    }

    fn timeout(&self, stage: Stage) -> Failure {
        let detail = match self.state {
            State::Subscribe | State::SubscribeRegister => "no SUBACK",
            State::UnsubscribeCreate | State::UnsubscribeRegister => "no UNSUBACK",
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
            tally: self.tally,
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

/// A SUBACK's first failure code, if any, as the failure it is.
fn suback(protocol: Protocol, refused: Option<u8>) -> Result<(), Failure> {
    let Some(code) = refused else { return Ok(()) };
    Err(match protocol {
        Protocol::Mqtt311 => Failure::new(FailureReason::SubscribeRefused, "SUBACK failure"),
        Protocol::Mqtt5 => Failure::new(
            FailureReason::SubscribeReason(code),
            format!("SUBACK {code:#04x} {}", reason_name(code)),
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
        let error: ErrorResponse = decode(spec.profile.payload, body, stage)?;
        return Err(classify::rejection(stage, error, &spec.classify));
    }
    decode(spec.profile.payload, body, stage)
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
mod profile_tests;
#[cfg(test)]
mod tests;
