//! The mock's metrics: what it already counts (connections, CONNECTs, provisioning API calls,
//! quota throttles, hook calls, keys), read from its atomics at each scrape.
//!
//! `fleetstorm mock --metrics-listen` serves them without labels; a run against its embedded
//! mock serves them with the run's labels beside the run's own metrics.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{LabelPairs, family, with};
use crate::mock::MockObserver;

/// The provisioning APIs in the order of the mock's counters, as the `api` label says them.
const APIS: [&str; 3] = [
    "create_keys_and_certificate",
    "create_certificate_from_csr",
    "register_thing",
];

/// A collector over a running mock's counters.
#[derive(Debug, Clone)]
pub struct MockMetrics {
    observer: MockObserver,
}

impl MockMetrics {
    pub fn new(observer: MockObserver) -> MockMetrics {
        MockMetrics { observer }
    }

    /// Write the mock's families, every sample with `labels`.
    pub(crate) fn write(
        &self,
        encoder: &mut DescriptorEncoder,
        labels: &LabelPairs,
    ) -> std::fmt::Result {
        let s = self.observer.stats();
        let counter = |v: u64| vec![(labels.clone(), ConstCounter::new(v))];
        let one = |e: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            family(e, name, help, MetricType::Counter, counter(v))
        };
        one(
            encoder,
            "mock_connections",
            "TCP connections the mock accepted",
            s.connections,
        )?;
        family(
            encoder,
            "mock_connections_open",
            "Connections open now",
            MetricType::Gauge,
            [(labels.clone(), ConstGauge::new(s.active_connections as i64))],
        )?;
        one(
            encoder,
            "mock_tls_failures",
            "TLS handshakes that failed",
            s.tls_failures,
        )?;
        let accepted = self.observer.connects_accepted();
        family(
            encoder,
            "mock_connects",
            "MQTT CONNECTs by result: accepted (a session started), refused (CONNACK refused: policy, malformed), throttled (over the CONNECT quota)",
            MetricType::Counter,
            [
                ("accepted", accepted),
                ("refused", s.connack_refused),
                ("throttled", s.throttled_connects),
            ]
            .map(|(result, v)| (with(labels, "result", result), ConstCounter::new(v))),
        )?;
        one(
            encoder,
            "mock_policy_disconnects",
            "Connections closed for a policy violation",
            s.policy_disconnects,
        )?;
        one(
            encoder,
            "mock_protocol_errors",
            "Connections closed for an MQTT protocol error",
            s.protocol_errors,
        )?;
        one(
            encoder,
            "mock_takeovers",
            "Connections closed because a newer one used the same client ID",
            s.takeovers,
        )?;
        let accepted = [
            s.create_keys_accepted,
            s.create_from_csr_accepted,
            s.register_thing_accepted,
        ];
        let rejected = [
            s.create_keys_rejected,
            s.create_from_csr_rejected,
            s.register_thing_rejected,
        ];
        let throttled = [
            s.throttled_create_keys,
            s.throttled_create_from_csr,
            s.throttled_register_thing,
        ];
        let mut requests = Vec::with_capacity(6);
        for (i, api) in APIS.iter().enumerate() {
            for (result, v) in [("accepted", accepted[i]), ("rejected", rejected[i])] {
                let l = with(&with(labels, "api", api), "result", result);
                requests.push((l, ConstCounter::new(v)));
            }
        }
        family(
            encoder,
            "mock_requests",
            "Provisioning API requests answered, by api and result (accepted or rejected: throttles, hook denials, injected errors, invalid requests)",
            MetricType::Counter,
            requests,
        )?;
        family(
            encoder,
            "mock_throttled",
            "Provisioning API requests rejected by the mock's quota (a subset of result=\"rejected\")",
            MetricType::Counter,
            APIS.iter()
                .zip(throttled)
                .map(|(api, v)| (with(labels, "api", api), ConstCounter::new(v))),
        )?;
        one(
            encoder,
            "mock_undelivered_responses",
            "Responses the mock could not deliver (the requester was gone)",
            s.undelivered_responses,
        )?;
        let hooks = self.observer.hooks();
        let mut calls = Vec::new();
        let mut cold = Vec::new();
        for (template, h) in &hooks {
            let t = with(labels, "template", template);
            for (result, v) in [
                ("allowed", h.allowed),
                ("denied", h.denied),
                ("error", h.errors),
                ("malformed", h.malformed),
                ("timeout", h.timeouts),
            ] {
                calls.push((with(&t, "result", result), ConstCounter::new(v)));
            }
            cold.push((t, ConstCounter::new(h.cold_starts)));
        }
        family(
            encoder,
            "mock_hook_calls",
            "Pre-provisioning hook invocations by template and result",
            MetricType::Counter,
            calls,
        )?;
        family(
            encoder,
            "mock_hook_cold_starts",
            "Pre-provisioning hook worker cold starts by template",
            MetricType::Counter,
            cold,
        )?;
        let keys = self.observer.keys();
        family(
            encoder,
            "mock_keys",
            "Key pairs CreateKeysAndCertificate handed out, by source (pool or generated inline)",
            MetricType::Counter,
            [
                ("pool", keys.served_from_pool),
                ("inline", keys.generated_inline),
            ]
            .map(|(source, v)| (with(labels, "source", source), ConstCounter::new(v))),
        )?;
        family(
            encoder,
            "mock_keys_pooled",
            "Key pairs ready in the pool now",
            MetricType::Gauge,
            [(labels.clone(), ConstGauge::new(keys.pooled as i64))],
        )
    }
}

/// A registry (prefix `fleetstorm_`) serving the mock's series without labels (`fleetstorm
/// mock --metrics-listen`).
pub fn registry(observer: MockObserver) -> prometheus_client::registry::Registry {
    let mut registry = prometheus_client::registry::Registry::with_prefix(super::PREFIX);
    registry.register_collector(Box::new(MockMetrics::new(observer)));
    registry
}

impl Collector for MockMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        self.write(&mut encoder, &Vec::new())
    }
}
