//! Seeded fault injection: added latency, dropped responses, closed connections, error responses
//! per API, and stalled TLS handshakes.

use std::time::Duration;

use rand::{Rng, RngExt, SeedableRng};

use crate::protocol::Api;

pub use crate::mock_settings::{ApiFaults, Faults, Latency};

impl Latency {
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        match *self {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform(lo, hi) => lo + (hi - lo).mul_f64(rng.random::<f64>()),
            Latency::Exponential(mean) => {
                let u: f64 = rng.random::<f64>();
                mean.mul_f64(-(1.0 - u).ln()).min(mean * 50)
            }
        }
    }
}

/// What the dice decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Answer,
    DropResponse,
    Disconnect,
    Error,
}

impl Faults {
    pub fn for_api(&self, api: Api) -> &ApiFaults {
        match api {
            Api::CreateKeysAndCertificate => &self.create_keys,
            Api::CreateCertificateFromCsr => &self.create_from_csr,
            Api::RegisterThing => &self.register_thing,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let rate = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("faults.{name}: must be between 0 and 1, got {v}"))
            }
        };
        rate("tls_stall_rate", self.tls_stall_rate)?;
        for (name, f) in [
            ("create_keys", &self.create_keys),
            ("create_from_csr", &self.create_from_csr),
            ("register_thing", &self.register_thing),
        ] {
            rate(&format!("{name}.drop_response_rate"), f.drop_response_rate)?;
            rate(&format!("{name}.disconnect_rate"), f.disconnect_rate)?;
            rate(&format!("{name}.error_rate"), f.error_rate)?;
            if f.drop_response_rate + f.disconnect_rate + f.error_rate > 1.0 {
                return Err(format!("faults.{name}: the rates add up to more than 1"));
            }
        }
        Ok(())
    }

    pub fn rng(&self, connection: u64) -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(
            self.seed ^ connection.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }
}

impl ApiFaults {
    pub fn is_quiet(&self) -> bool {
        self.latency == Latency::None
            && self.drop_response_rate == 0.0
            && self.disconnect_rate == 0.0
            && self.error_rate == 0.0
    }

    pub fn roll(&self, rng: &mut impl Rng) -> Verdict {
        let x: f64 = rng.random::<f64>();
        if x < self.disconnect_rate {
            Verdict::Disconnect
        } else if x < self.disconnect_rate + self.drop_response_rate {
            Verdict::DropResponse
        } else if x < self.disconnect_rate + self.drop_response_rate + self.error_rate {
            Verdict::Error
        } else {
            Verdict::Answer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_specs_parse_and_sample_within_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            Latency::parse("200ms").unwrap(),
            Latency::Fixed(Duration::from_millis(200))
        );
        let u = Latency::parse("50ms..300ms").unwrap();
        for _ in 0..100 {
            let d = u.sample(&mut rng);
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(300));
        }
        let e = Latency::parse("exp:10ms").unwrap();
        let mean: f64 = (0..4000)
            .map(|_| e.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / 4000.0;
        assert!((0.008..0.012).contains(&mean), "{mean}");
        assert!(Latency::parse("300ms..50ms").is_err());
        assert!(Latency::parse("soon").is_err());
    }

    #[test]
    fn verdicts_follow_the_configured_rates() {
        let f = ApiFaults {
            disconnect_rate: 0.2,
            drop_response_rate: 0.3,
            error_rate: 0.1,
            ..Default::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..10_000 {
            *counts.entry(f.roll(&mut rng)).or_insert(0) += 1;
        }
        let share = |v| counts.get(&v).copied().unwrap_or(0) as f64 / 10_000.0;
        assert!((share(Verdict::Disconnect) - 0.2).abs() < 0.02);
        assert!((share(Verdict::DropResponse) - 0.3).abs() < 0.02);
        assert!((share(Verdict::Error) - 0.1).abs() < 0.02);
        let bad = Faults {
            register_thing: ApiFaults {
                error_rate: 1.5,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("register_thing.error_rate")
        );
    }
}
