//! What a run costs on AWS IoT Core: the price table (`pricing/aws-iot-core.toml`, shipped in
//! the binary) and [`price`], the one pure function from what a run did ([`Usage`]) to its
//! cost (`cost` in `summary.json`). The run's summary prices what its devices counted; the
//! remote-run guard prices what the plan will do, before anything is sent ([`planned_device`]).
//!
//! Against the mock (or any endpoint that is not AWS IoT's) the same figure is labelled "would
//! cost on AWS": the usage is the same, only nobody bills it.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::device::{After, AfterAction, connection_minutes, message_units};

/// The price table as shipped.
pub const PRICE_TABLE: &str = include_str!("../../pricing/aws-iot-core.toml");

/// Where the price table lives in the source tree (what the run's notes point at).
pub const PRICE_TABLE_PATH: &str = "pricing/aws-iot-core.toml";

/// `pricing/aws-iot-core.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// When the prices were read (YYYY-MM-DD).
    pub read: String,
    pub source: String,
    pub metering_source: String,
    pub currency: String,
    pub connectivity: Price,
    pub messaging: Price,
    pub registry: Price,
}

/// One priced item of the table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Price per million units.
    pub per_million: f64,
    pub unit: String,
    /// The metering unit's size in bytes (messages: 5 KB; registry records: 1 KB).
    #[serde(default)]
    pub unit_bytes: Option<u64>,
    pub region_dependent: bool,
    /// Where the figure comes from; `UNCONFIRMED` where no source gave it exactly.
    pub status: String,
    pub metering: String,
    /// Registry only: operations charged per accepted RegisterThing.
    #[serde(default)]
    pub per_registration: Option<u64>,
}

impl Prices {
    /// The table shipped in the binary (a unit test checks that it parses).
    pub fn shipped() -> &'static Prices {
        static PRICES: OnceLock<Prices> = OnceLock::new();
        PRICES.get_or_init(|| {
            toml::from_str(PRICE_TABLE).expect("pricing/aws-iot-core.toml parses (unit-tested)")
        })
    }
}

/// What a run did that AWS IoT Core prices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Connection-minutes, each connection rounded up to a minute.
    pub connection_minutes: u64,
    /// Metered messages, in 5 KB units.
    pub messages: u64,
    /// Accepted RegisterThing responses (priced as the table's `per_registration` registry
    /// operations each).
    pub registrations: u64,
}

impl Usage {
    /// `self` for each of `n` devices.
    pub fn times(&self, n: u64) -> Usage {
        Usage {
            connection_minutes: self.connection_minutes.saturating_mul(n),
            messages: self.messages.saturating_mul(n),
            registrations: self.registrations.saturating_mul(n),
        }
    }
}

/// `cost` in summary.json: what the run's usage costs at the shipped price table's prices
/// (before any Free Tier), in total and per priced item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Cost {
    /// `connectivity` + `messaging` + `registry`, in `currency`.
    pub total: f64,
    /// The currency of every figure (`USD`).
    pub currency: String,
    /// `on AWS` for a run against an AWS IoT endpoint; `would cost on AWS` against the mock or
    /// any other endpoint (the same usage, priced as AWS would).
    pub label: String,
    /// The date the price table's prices were read (`read` in `pricing/aws-iot-core.toml`).
    pub prices_read: String,
    /// Connection-minutes of the devices' accepted connections.
    pub connectivity: CostItem,
    /// Metered MQTT messages (5 KB units) the devices sent and received.
    pub messaging: CostItem,
    /// Registry operations the provisioning flow caused.
    pub registry: CostItem,
}

/// One priced item of `cost`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct CostItem {
    /// How many units the run used.
    pub quantity: u64,
    /// What a unit is (`connection-minute`, `message`, `operation`).
    pub unit: String,
    /// The price per million units.
    pub per_million: f64,
    /// `quantity` × `per_million` ÷ 1,000,000.
    pub cost: f64,
    /// True when AWS prices the item differently by Region (the table's figure is one
    /// Region's).
    pub region_dependent: bool,
}

fn item(quantity: u64, p: &Price) -> CostItem {
    CostItem {
        quantity,
        unit: p.unit.clone(),
        per_million: p.per_million,
        cost: quantity as f64 * p.per_million / 1e6,
        region_dependent: p.region_dependent,
    }
}

/// The cost of `usage` at `prices`; `on_aws`: the run went to AWS IoT (else "would cost").
pub fn price(usage: &Usage, prices: &Prices, on_aws: bool) -> Cost {
    let per_registration = prices.registry.per_registration.unwrap_or(0);
    let connectivity = item(usage.connection_minutes, &prices.connectivity);
    let messaging = item(usage.messages, &prices.messaging);
    let registry = item(
        usage.registrations.saturating_mul(per_registration),
        &prices.registry,
    );
    Cost {
        total: connectivity.cost + messaging.cost + registry.cost,
        currency: prices.currency.clone(),
        label: if on_aws {
            "on AWS"
        } else {
            "would cost on AWS"
        }
        .into(),
        prices_read: prices.read.clone(),
        connectivity,
        messaging,
        registry,
    }
}

/// What one device's flow uses when it succeeds at its first attempt, as planned: the claim
/// connection (CONNECT; one SUBSCRIBE, or one per step with `per_step_subscriptions`; each
/// request, its response and the device's PUBACK of it) for one minute, then its own
/// connection (CONNECT and any telemetry) for its stay, and one registration. An estimate: the
/// run's summary prices what the devices counted.
pub fn planned_device(per_step_subscriptions: bool, after: &After) -> Usage {
    let subscribes = if per_step_subscriptions { 2 } else { 1 };
    // CONNECT, the SUBSCRIBEs, and request + response + PUBACK for each of the two APIs.
    let claim = 1 + subscribes + 2 * 3;
    let (stay, publishes) = match after.action {
        AfterAction::Disconnect => (std::time::Duration::ZERO, 0),
        AfterAction::Stay => (after.duration, 0),
        AfterAction::Telemetry => {
            let interval = after.interval.as_nanos().max(1);
            let n = after.duration.as_nanos().div_ceil(interval);
            (after.duration, u64::try_from(n).unwrap_or(u64::MAX))
        }
    };
    let telemetry =
        publishes.saturating_mul(message_units(after.topic.len() + after.payload_bytes).into());
    Usage {
        connection_minutes: 1 + u64::from(connection_minutes(stay)),
        messages: claim + 1 + telemetry,
        registrations: 1,
    }
}

/// One line for people: `$0.0012 would cost on AWS (USD, prices of 2026-12-07)`.
pub fn render(c: &Cost) -> String {
    format!(
        "${} {} ({}, prices of {}, Region-dependent: {PRICE_TABLE_PATH})",
        amount(c.total),
        c.label,
        c.currency,
        c.prices_read
    )
}

/// A dollar amount with enough digits to show a small run's cost (not 0.00).
pub fn amount(x: f64) -> String {
    if x == 0.0 || x >= 0.01 {
        format!("{x:.2}")
    } else {
        format!("{x:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shipped() -> &'static Prices {
        Prices::shipped()
    }

    #[test]
    fn the_shipped_table_parses_with_a_date_a_source_and_every_item_region_dependent() {
        let p = shipped();
        assert_eq!(p.currency, "USD");
        assert!(
            p.source
                .starts_with("https://aws.amazon.com/iot-core/pricing")
        );
        assert_eq!(p.read.len(), 10, "YYYY-MM-DD: {}", p.read);
        for item in [&p.connectivity, &p.messaging, &p.registry] {
            assert!(item.region_dependent && item.per_million > 0.0, "{item:?}");
        }
        // The device counts messages in the table's unit.
        assert_eq!(
            p.messaging.unit_bytes,
            Some(crate::device::MESSAGE_UNIT_BYTES as u64)
        );
    }

    /// A table with round prices, so the hand computations read plainly.
    fn prices(per_registration: u64) -> Prices {
        let mut p = shipped().clone();
        p.connectivity.per_million = 0.08;
        p.messaging.per_million = 1.0;
        p.registry.per_million = 1.25;
        p.registry.per_registration = Some(per_registration);
        p
    }

    #[test]
    fn connectivity_is_connection_minutes_at_the_price_per_million() {
        // 1,000 devices × 2 minutes = 2,000 minutes × $0.08 / 1e6 = $0.00016.
        let usage = Usage {
            connection_minutes: 2_000,
            ..Usage::default()
        };
        let c = price(&usage, &prices(0), true);
        assert_eq!(c.connectivity.quantity, 2_000);
        assert!((c.connectivity.cost - 0.000_16).abs() < 1e-15, "{c:?}");
        assert!((c.total - 0.000_16).abs() < 1e-15);
        assert_eq!(c.connectivity.unit, "connection-minute");
    }

    #[test]
    fn messaging_is_metered_messages_at_the_price_per_million() {
        // 3,000,000 messages × $1.00 / 1e6 = $3.00.
        let usage = Usage {
            messages: 3_000_000,
            ..Usage::default()
        };
        let c = price(&usage, &prices(0), true);
        assert_eq!((c.messaging.quantity, c.messaging.cost), (3_000_000, 3.0));
        assert_eq!(c.total, 3.0);
    }

    #[test]
    fn registry_is_operations_per_registration_at_the_price_per_million() {
        let usage = Usage {
            registrations: 400_000,
            ..Usage::default()
        };
        // 400,000 registrations × 2 operations = 800,000 × $1.25 / 1e6 = $1.00.
        let c = price(&usage, &prices(2), true);
        assert_eq!((c.registry.quantity, c.registry.cost), (800_000, 1.0));
        // A table that charges none per registration: no registry operations.
        let c = price(&usage, &prices(0), true);
        assert_eq!((c.registry.quantity, c.registry.cost), (0, 0.0));
    }

    #[test]
    fn the_total_adds_the_items_and_the_mock_is_labelled_would_cost() {
        let usage = Usage {
            connection_minutes: 1_000_000,
            messages: 2_000_000,
            registrations: 1_000_000,
        };
        let on_aws = price(&usage, &prices(1), true);
        // $0.08 + $2.00 + $1.25.
        assert!((on_aws.total - 3.33).abs() < 1e-12, "{on_aws:?}");
        assert_eq!(on_aws.label, "on AWS");
        let mock = price(&usage, &prices(1), false);
        assert_eq!(mock.label, "would cost on AWS");
        assert_eq!(mock.total, on_aws.total);
        assert_eq!(mock.prices_read, shipped().read);
        assert!(render(&mock).contains("would cost on AWS (USD, prices of"));
    }

    #[test]
    fn a_planned_device_uses_the_claim_connection_then_its_own() {
        let mut after = After::default();
        // Disconnect: claim (CONNECT, SUBSCRIBE, 2 × request/response/PUBACK) + own CONNECT.
        let u = planned_device(false, &after);
        assert_eq!(
            (u.connection_minutes, u.messages, u.registrations),
            (2, 9, 1)
        );
        assert_eq!(planned_device(true, &after).messages, 10);
        // Telemetry for 90 s every 10 s: 9 publishes, the own connection 2 minutes.
        after.action = AfterAction::Telemetry;
        after.duration = Duration::from_secs(90);
        after.interval = Duration::from_secs(10);
        let u = planned_device(false, &after);
        assert_eq!((u.connection_minutes, u.messages), (3, 18));
        // A payload over 5 KB counts twice per publish.
        after.payload_bytes = 6 * 1024;
        assert_eq!(planned_device(false, &after).messages, 9 + 18);
        assert_eq!(u.times(10).messages, 180);
    }

    #[test]
    fn small_amounts_keep_their_digits() {
        assert_eq!(amount(0.000_16), "0.000160");
        assert_eq!(amount(3.33), "3.33");
        assert_eq!(amount(0.0), "0.00");
    }
}
