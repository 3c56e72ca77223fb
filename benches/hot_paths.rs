//! Criterion benches of the per-request hot paths: template evaluation, policy matching,
//! metrics recording and merging, MQTT encode/decode of the API payloads, and one frame of the
//! live dashboard.
//!
//! cargo bench --bench hot_paths

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use fleetstorm::device::{Stage, StageTime};
use fleetstorm::iot::policy::{self, Action, ArnContext, PolicyDocument, PolicyVars};
use fleetstorm::iot::template::{RenderContext, SEED_TEMPLATE_JSON, Template};
use fleetstorm::metrics::StageSet;
use fleetstorm::protocol::{Format, RegisterThingRequest, RegisterThingResponse, RequestTopic};
use rumqttc::{Packet, Publish, QoS};

fn template(c: &mut Criterion) {
    let t = Template::parse(SEED_TEMPLATE_JSON).unwrap();
    let params = BTreeMap::from([
        ("DeviceName".to_string(), "FPC-device-1".to_string()),
        ("SerialNumber".to_string(), "123456000001".to_string()),
        ("DeviceLocation".to_string(), "Berlin".to_string()),
    ]);
    let id = "a".repeat(64);
    c.bench_function("template/render_seed", |b| {
        b.iter(|| {
            t.render(&RenderContext {
                parameters: &params,
                certificate_id: &id,
            })
            .unwrap()
        })
    });
    c.bench_function("template/parse_seed", |b| {
        b.iter(|| Template::parse(SEED_TEMPLATE_JSON).unwrap())
    });
}

fn policy_match(c: &mut Criterion) {
    let arn = ArnContext {
        region: "us-east-1".into(),
        account: "123456789012".into(),
    };
    let doc = PolicyDocument::parse(&policy::claim_policy_json(
        &arn,
        "FleetProvisioningTemplate",
    ))
    .unwrap();
    let vars = PolicyVars {
        client_id: "device-1",
        thing_name: None,
        certificate_id: None,
    };
    let allowed =
        arn.topic_arn("$aws/provisioning-templates/FleetProvisioningTemplate/provision/json");
    let denied = arn.topic_filter_arn("#");
    c.bench_function("policy/claim_publish_allowed", |b| {
        b.iter(|| policy::evaluate([&doc], Action::Publish, &allowed, &vars))
    });
    c.bench_function("policy/claim_subscribe_denied", |b| {
        b.iter(|| policy::evaluate([&doc], Action::Subscribe, &denied, &vars))
    });
}

fn metrics(c: &mut Criterion) {
    let now = Instant::now();
    let stages: Vec<StageTime> = Stage::ALL[..5]
        .iter()
        .enumerate()
        .map(|(i, s)| StageTime {
            stage: *s,
            service: Duration::from_micros(500 + 100 * i as u64),
            ended: now + Duration::from_millis(1 + i as u64),
            due: None,
        })
        .collect();
    let mut set = StageSet::default();
    c.bench_function("metrics/record_device", |b| {
        b.iter(|| {
            set.record_device(
                now,
                &stages,
                Some((Duration::from_millis(5), Duration::from_millis(6))),
            )
        })
    });
    let mut total = StageSet::default();
    c.bench_function("metrics/merge_interval", |b| b.iter(|| total.add(&set)));
}

fn mqtt(c: &mut Criterion) {
    let topic = RequestTopic::register_thing("FleetProvisioningTemplate", Format::Json);
    let request = RegisterThingRequest {
        certificate_ownership_token: Some("t".repeat(64)),
        parameters: Some(BTreeMap::from([(
            "DeviceName".into(),
            "FPC-device-1".into(),
        )])),
    };
    let payload = Format::Json.encode(&request);
    c.bench_function("mqtt/encode_register_thing_publish", |b| {
        let mut buf = BytesMut::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            let mut p = Publish::new(topic.topic(), QoS::AtLeastOnce, payload.clone());
            p.pkid = 1;
            Packet::Publish(p).write(&mut buf, usize::MAX).unwrap()
        })
    });
    let mut frame = BytesMut::new();
    let mut p = Publish::new(topic.topic(), QoS::AtLeastOnce, payload.clone());
    p.pkid = 1;
    Packet::Publish(p).write(&mut frame, usize::MAX).unwrap();
    c.bench_function("mqtt/decode_register_thing_publish", |b| {
        b.iter(|| {
            let mut buf = frame.clone();
            let Packet::Publish(p) = Packet::read(&mut buf, 1 << 20).unwrap() else {
                unreachable!()
            };
            Format::Json
                .decode::<RegisterThingRequest>(&p.payload)
                .unwrap()
        })
    });
    let response = RegisterThingResponse {
        device_configuration: Default::default(),
        thing_name: "FPC-device-1".into(),
    };
    c.bench_function("mqtt/encode_register_thing_response_json", |b| {
        b.iter(|| Format::Json.encode(&response))
    });
}

/// One dashboard frame with a full chart history (10 minutes), every stage and five failure
/// reasons, on a 200x60 terminal: the per-frame cost of the TUI (it draws `tui::FPS` a second).
fn dashboard(c: &mut Criterion) {
    use fleetstorm::live::{CURVE, FailureView, Snapshot, StageView};
    use fleetstorm::metrics::{Percentiles, STAGE_NAMES};
    use std::sync::Arc;
    let p = |base: f64| Percentiles {
        count: 123_456,
        mean_ms: base,
        p50_ms: base,
        p90_ms: base * 2.0,
        p99_ms: base * 3.0,
        p999_ms: base * 4.0,
        max_ms: base * 5.0,
    };
    let mut app = fleetstorm::tui::App::default();
    for t in 1..=600u64 {
        app.update(Arc::new(Snapshot {
            scenario: "bench".into(),
            endpoint: "embedded mock".into(),
            elapsed: Duration::from_secs(t),
            schedule_elapsed: Duration::from_secs(t),
            planned: Duration::from_secs(900),
            phase: "2/3 ramping-arrival-rate".into(),
            target_rate: Some(2000.0),
            planned_devices: 1_000_000,
            started: 2000 * t,
            provisioned: 1990 * t,
            failed: 10 * t,
            in_flight: 4000,
            interval: Duration::from_secs(1),
            interval_offered: 2000 + t % 50,
            interval_provisioned: 1990 + t % 30,
            interval_failed: 10 + t % 7,
            stages: STAGE_NAMES
                .iter()
                .enumerate()
                .map(|(i, name)| StageView {
                    name,
                    interval: p(10.0 + i as f64),
                    total: p(20.0 + i as f64),
                    curve: CURVE.iter().map(|q| (*q, 1.0 + q / 10.0)).collect(),
                })
                .collect(),
            failures: (0..5)
                .map(|i| FailureView {
                    reason: format!("rejected.register_thing.{i}"),
                    count: 100 * i,
                    latest: "ThrottlingException: Rate exceeded for RegisterThing".into(),
                })
                .collect(),
            ..Snapshot::default()
        }));
    }
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(200, 60)).expect("terminal");
    c.bench_function("tui/frame_200x60", |b| {
        b.iter(|| {
            terminal
                .draw(|f| fleetstorm::tui::render(f, &app))
                .map(|frame| frame.area.width)
                .expect("draw")
        })
    });
}

criterion_group!(benches, template, policy_match, metrics, mqtt, dashboard);
criterion_main!(benches);
