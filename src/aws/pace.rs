//! Control-plane pacing: one rate limiter per API below its account quota, full-jitter backoff on throttling.
//!
//! AWS IoT Core limits each control-plane API per account and Region. The defaults below come from
//! the Service Quotas listing of the `iotcore` service (quota codes given; a public dump of
//! `aws service-quotas list-aws-default-service-quotas --service-code iotcore`, a secondary
//! source: check yours with `aws service-quotas get-service-quota --service-code iotcore
//! --quota-code CODE`). Where the listing has the quota's code but no value that could be
//! verified, the default is a conservative 10 TPS, marked `guess`. Cleanup runs at
//! [`DEFAULT_FRACTION`] of each, never faster than `--max-tps`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};

use super::{ErrorClass, HasStatus, classify, describe};

/// Cleanup uses this fraction of each quota, leaving room for whatever else runs in the account.
pub const DEFAULT_FRACTION: f64 = 0.8;

/// The control-plane APIs cleanup calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ListAttachedPolicies,
    DetachPolicy,
    ListPrincipalThings,
    DetachThingPrincipal,
    UpdateCertificate,
    DeleteCertificate,
    ListThingPrincipals,
    DeleteThing,
    ListTargetsForPolicy,
    GetPolicy,
    DeletePolicy,
    ListThings,
    DescribeCertificate,
    ListCertificates,
    ListPolicies,
    /// CloudWatch's GetMetricData (`aws metrics`).
    GetMetricData,
    /// Setup and teardown calls (templates, policies, IAM): few, paced together.
    Other,
}

impl Api {
    pub const ALL: [Api; 17] = [
        Api::ListAttachedPolicies,
        Api::DetachPolicy,
        Api::ListPrincipalThings,
        Api::DetachThingPrincipal,
        Api::UpdateCertificate,
        Api::DeleteCertificate,
        Api::ListThingPrincipals,
        Api::DeleteThing,
        Api::ListTargetsForPolicy,
        Api::GetPolicy,
        Api::DeletePolicy,
        Api::ListThings,
        Api::DescribeCertificate,
        Api::ListCertificates,
        Api::ListPolicies,
        Api::GetMetricData,
        Api::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Api::ListAttachedPolicies => "ListAttachedPolicies",
            Api::DetachPolicy => "DetachPolicy",
            Api::ListPrincipalThings => "ListPrincipalThings",
            Api::DetachThingPrincipal => "DetachThingPrincipal",
            Api::UpdateCertificate => "UpdateCertificate",
            Api::DeleteCertificate => "DeleteCertificate",
            Api::ListThingPrincipals => "ListThingPrincipals",
            Api::DeleteThing => "DeleteThing",
            Api::ListTargetsForPolicy => "ListTargetsForPolicy",
            Api::GetPolicy => "GetPolicy",
            Api::DeletePolicy => "DeletePolicy",
            Api::ListThings => "ListThings",
            Api::DescribeCertificate => "DescribeCertificate",
            Api::ListCertificates => "ListCertificates",
            Api::ListPolicies => "ListPolicies",
            Api::GetMetricData => "GetMetricData",
            Api::Other => "other",
        }
    }

    /// Whether the operation can answer `ResourceNotFoundException` (botocore's `iot`
    /// 2015-05-28 model lists it in the operation's errors): only then does a not-found answer
    /// mean the resource is gone. `Other` (setup and teardown, IAM included) goes by the code.
    pub fn answers_not_found(self) -> bool {
        !matches!(
            self,
            Api::DetachPolicy
                | Api::ListThings
                | Api::ListCertificates
                | Api::ListPolicies
                | Api::GetMetricData
        )
    }

    /// Default account quota in TPS and its Service Quotas code (`None`: no code found).
    /// `guess` marks a value not found in any source (conservative).
    pub fn quota(self) -> Quota {
        let q = |tps, code, guess| Quota { tps, code, guess };
        match self {
            Api::DeleteThing => q(100.0, Some("L-889800F7"), false),
            Api::DetachThingPrincipal => q(100.0, Some("L-B5EE4A16"), false),
            Api::ListThingPrincipals => q(10.0, Some("L-FC3EF4D9"), false),
            Api::ListPrincipalThings => q(10.0, Some("L-C481616A"), false),
            Api::ListThings => q(10.0, Some("L-57AAC135"), false),
            Api::DeleteCertificate => q(10.0, Some("L-EEB8F0B1"), true),
            Api::UpdateCertificate => q(10.0, Some("L-77B523DC"), true),
            Api::ListAttachedPolicies
            | Api::DetachPolicy
            | Api::ListTargetsForPolicy
            | Api::GetPolicy
            | Api::DeletePolicy
            | Api::DescribeCertificate
            | Api::ListCertificates
            | Api::ListPolicies
            | Api::GetMetricData
            | Api::Other => q(10.0, None, true),
        }
    }
}

/// One API's default quota.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub tps: f64,
    pub code: Option<&'static str>,
    pub guess: bool,
}

/// Retry policy: full jitter, `delay = uniform(0, min(cap, base * 2^attempt))`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Attempts in total for throttled / transient errors.
    pub max_attempts: u32,
    /// Attempts in total for `DeleteConflictException` (detaching propagates asynchronously).
    pub conflict_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(20),
            max_attempts: 12,
            conflict_attempts: 6,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based) for a uniform sample `unit` in [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        exp.min(self.cap).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// One API's limiter: requests spaced at least `1 / rate` apart (no burst, so never over the
/// rate in any window); the rate halves on a throttle and creeps back (+5 % per success).
#[derive(Debug)]
struct Limiter {
    configured: f64,
    rate: f64,
    next: Instant,
}

/// Rate limiters and retry counters shared by every cleanup worker.
#[derive(Debug)]
pub struct Pacer {
    limiters: Vec<Mutex<Limiter>>,
    backoff: Backoff,
    /// Calls sent, throttled answers, other retried failures.
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    pub retried: AtomicU64,
}

impl Pacer {
    /// Limiters at `fraction` of each default quota, capped at `max_tps`.
    pub fn new(fraction: f64, max_tps: Option<f64>, backoff: Backoff) -> Self {
        let now = Instant::now();
        let limiters = Api::ALL
            .iter()
            .map(|api| {
                let mut rate = api.quota().tps * fraction;
                if let Some(max) = max_tps {
                    rate = rate.min(max);
                }
                let rate = rate.max(0.01);
                Mutex::new(Limiter {
                    configured: rate,
                    rate,
                    next: now,
                })
            })
            .collect();
        Pacer {
            limiters,
            backoff,
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }
    }

    fn limiter(&self, api: Api) -> &Mutex<Limiter> {
        let index = Api::ALL.iter().position(|a| *a == api).unwrap_or(0);
        &self.limiters[index]
    }

    /// The configured rate of `api` (requests per second).
    pub fn rate(&self, api: Api) -> f64 {
        self.limiter(api).lock().map_or(0.0, |l| l.configured)
    }

    /// Wait for `api`'s next slot.
    pub async fn acquire(&self, api: Api) {
        let at = {
            let Ok(mut l) = self.limiter(api).lock() else {
                return;
            };
            let now = Instant::now();
            let at = l.next.max(now);
            l.next = at + Duration::from_secs_f64(1.0 / l.rate);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    fn adjust(&self, api: Api, throttled: bool) {
        if let Ok(mut l) = self.limiter(api).lock() {
            l.rate = if throttled {
                (l.rate / 2.0).max(l.configured / 64.0)
            } else {
                (l.rate * 1.05).min(l.configured)
            };
        }
    }

    /// Call `f` paced as `api`, retrying throttled, transient and (a few times) conflicting
    /// answers with full-jitter backoff; `conflicts` lists more error codes to treat as a
    /// conflict that resolves itself (AWS detaches asynchronously). `Ok(None)`: the resource was
    /// not found (`ResourceNotFoundException` from an operation that can answer it); any other
    /// error is returned with its class, a [`ErrorClass::SetUp`] one after a single attempt.
    pub async fn call<T, E, R, F, Fut>(
        &self,
        api: Api,
        conflicts: &[&str],
        mut f: F,
    ) -> Result<Option<T>, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: HasStatus + std::fmt::Debug,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.acquire(api).await;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let err = match f().await {
                Ok(v) => {
                    self.adjust(api, false);
                    return Ok(Some(v));
                }
                Err(e) => e,
            };
            let mut class = classify(&err);
            if class == ErrorClass::Fatal && err.code().is_some_and(|c| conflicts.contains(&c)) {
                class = ErrorClass::Conflict;
            }
            if class == ErrorClass::NotFound && !api.answers_not_found() {
                class = ErrorClass::Fatal;
            }
            let limit = match class {
                ErrorClass::NotFound => return Ok(None),
                ErrorClass::Throttled => {
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                    self.adjust(api, true);
                    self.backoff.max_attempts
                }
                ErrorClass::Transient => self.backoff.max_attempts,
                ErrorClass::Conflict => self.backoff.conflict_attempts,
                ErrorClass::Fatal | ErrorClass::SetUp => 1,
            };
            if attempt >= limit {
                return Err(CallError {
                    api,
                    class,
                    code: err.code().map(str::to_string),
                    status: err.raw_response().map(HasStatus::status_code),
                    message: describe(&err),
                    attempts: attempt,
                });
            }
            if class != ErrorClass::Throttled {
                self.retried.fetch_add(1, Ordering::Relaxed);
            }
            let unit: f64 = rand::random();
            tokio::time::sleep(self.backoff.delay(attempt, unit)).await;
        }
    }
}

/// A call that failed for good.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message} (after {attempts} attempt{})", api.name(), if *attempts == 1 { "" } else { "s" })]
pub struct CallError {
    pub api: Api,
    /// How the last answer was classified ([`ErrorClass::SetUp`]: the command cannot go on).
    pub class: ErrorClass,
    /// The AWS error code, when the answer had one.
    pub code: Option<String>,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub message: String,
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(200));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(400));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(20));
        assert_eq!(b.delay(5, 0.0), Duration::ZERO);
    }

    #[test]
    fn rates_stay_below_the_quotas_and_under_the_cap() {
        let p = Pacer::new(DEFAULT_FRACTION, None, Backoff::default());
        for api in Api::ALL {
            assert!(p.rate(api) < api.quota().tps, "{}", api.name());
        }
        let p = Pacer::new(DEFAULT_FRACTION, Some(3.0), Backoff::default());
        assert_eq!(p.rate(Api::DeleteThing), 3.0);
        assert_eq!(p.rate(Api::DeleteCertificate), 3.0);
    }

    #[tokio::test]
    async fn requests_are_spaced_by_the_rate() {
        let p = Pacer::new(1.0, Some(100.0), Backoff::default());
        let start = Instant::now();
        for _ in 0..11 {
            p.acquire(Api::DeleteThing).await;
        }
        // 11 requests at 100/s: the last one 100 ms after the first, never sooner.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(99) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
    }

    #[test]
    fn a_throttle_halves_the_rate_and_successes_restore_it() {
        let p = Pacer::new(1.0, Some(10.0), Backoff::default());
        p.adjust(Api::DeleteThing, true);
        let halved = p.limiter(Api::DeleteThing).lock().unwrap().rate;
        assert_eq!(halved, 5.0);
        for _ in 0..100 {
            p.adjust(Api::DeleteThing, false);
        }
        assert_eq!(p.limiter(Api::DeleteThing).lock().unwrap().rate, 10.0);
    }
}
