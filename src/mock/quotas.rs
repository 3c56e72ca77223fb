//! AWS IoT Core quotas as token buckets (`spec/aws-fleet-provisioning.md` §5): per-API TPS,
//! CONNECTs per account and per client ID, publishes per connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::protocol::Api;

pub use crate::mock_settings::QuotaSettings;

impl QuotaSettings {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("create_keys_per_s", self.create_keys_per_s),
            ("create_from_csr_per_s", self.create_from_csr_per_s),
            ("register_thing_per_s", self.register_thing_per_s),
            ("connect_per_s", self.connect_per_s),
            (
                "connect_per_client_id_per_s",
                self.connect_per_client_id_per_s,
            ),
            (
                "publish_per_connection_per_s",
                self.publish_per_connection_per_s,
            ),
            ("control_plane_per_s", self.control_plane_per_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "quotas.{name}: must be a number >= 0 (0 = no limit), got {v}"
                ));
            }
        }
        if !(self.burst_seconds.is_finite() && self.burst_seconds > 0.0) {
            return Err("quotas.burst_seconds: must be positive".into());
        }
        Ok(())
    }
}

/// A token bucket refilled continuously at `rate` per second up to `capacity`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst_seconds: f64) -> TokenBucket {
        let capacity = (rate * burst_seconds).max(1.0);
        TokenBucket {
            rate,
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Take one token if there is one.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.capacity);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            true
        } else {
            *state = (refilled, now);
            false
        }
    }
}

/// The quotas of one mock.
pub struct Quotas {
    settings: QuotaSettings,
    apis: [Option<TokenBucket>; 3],
    connect: Option<TokenBucket>,
    control: Option<TokenBucket>,
    last_connect: Mutex<HashMap<String, Instant>>,
}

impl Quotas {
    pub fn new(settings: &QuotaSettings) -> Quotas {
        let bucket = |rate: f64| {
            (settings.enabled && rate > 0.0).then(|| TokenBucket::new(rate, settings.burst_seconds))
        };
        Quotas {
            apis: [
                bucket(settings.create_keys_per_s),
                bucket(settings.create_from_csr_per_s),
                bucket(settings.register_thing_per_s),
            ],
            connect: bucket(settings.connect_per_s),
            control: bucket(settings.control_plane_per_s),
            last_connect: Mutex::new(HashMap::new()),
            settings: settings.clone(),
        }
    }

    pub fn settings(&self) -> &QuotaSettings {
        &self.settings
    }

    /// Whether an API call is within its TPS quota.
    pub fn allow_api(&self, api: Api) -> bool {
        self.apis[api as usize]
            .as_ref()
            .is_none_or(TokenBucket::try_take)
    }

    /// Whether a control-plane call is within its quota.
    pub fn allow_control(&self) -> bool {
        self.control.as_ref().is_none_or(TokenBucket::try_take)
    }

    /// Whether a CONNECT is within the account rate and the per-client-ID rate.
    pub fn allow_connect(&self, client_id: &str) -> bool {
        if !self.settings.enabled {
            return true;
        }
        let per_id = self.settings.connect_per_client_id_per_s;
        if per_id > 0.0 {
            let now = Instant::now();
            let mut last = self.last_connect.lock().unwrap_or_else(|e| e.into_inner());
            if last.len() > 100_000 {
                // Bound the memory of long runs: forget entries older than the window.
                let window = std::time::Duration::from_secs_f64(1.0 / per_id);
                last.retain(|_, t| now.saturating_duration_since(*t) < window);
            }
            if let Some(t) = last.get(client_id)
                && now.saturating_duration_since(*t).as_secs_f64() < 1.0 / per_id
            {
                return false;
            }
            last.insert(client_id.to_string(), now);
        }
        self.connect.as_ref().is_none_or(TokenBucket::try_take)
    }

    /// A fresh per-connection publish bucket, if that quota is on.
    pub fn publish_bucket(&self) -> Option<TokenBucket> {
        let rate = self.settings.publish_per_connection_per_s;
        (self.settings.enabled && rate > 0.0).then(|| TokenBucket::new(rate, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_rate_and_refuses_the_excess() {
        let b = TokenBucket::new(10.0, 1.0);
        let t0 = Instant::now();
        // A full bucket: 10 at once, then nothing until it refills.
        assert_eq!((0..15).filter(|_| b.try_take_at(t0)).count(), 10);
        // Over the next 2 s, 20 more tokens arrive: offered 40, 20 pass.
        let passed = (1..=40)
            .filter(|i| b.try_take_at(t0 + Duration::from_millis(50 * i)))
            .count();
        assert_eq!(passed, 20);
    }

    #[test]
    fn disabled_quotas_allow_everything_and_per_client_id_connects_are_limited() {
        let off = Quotas::new(&QuotaSettings::default());
        assert!((0..1000).all(|_| off.allow_api(Api::RegisterThing)));
        let on = Quotas::new(&QuotaSettings {
            enabled: true,
            ..Default::default()
        });
        assert_eq!(
            (0..50).filter(|_| on.allow_api(Api::RegisterThing)).count(),
            10
        );
        assert_eq!(
            (0..50)
                .filter(|_| on.allow_api(Api::CreateCertificateFromCsr))
                .count(),
            50
        );
        assert!(on.allow_connect("a"));
        assert!(!on.allow_connect("a"), "1 CONNECT/s per client ID");
        assert!(on.allow_connect("b"));
    }
}
