//! What one device did that AWS counts against its quotas: whole-flow attempts, MQTT connects,
//! certificates issued and registrations accepted, counted on the device side (so they are true
//! against real AWS too). The amplification figures of a run are sums and maxima of these.

use std::time::Instant;

/// One device's counts. Per attempt in a [`super::DeviceReport`]; summed over a device's
/// attempts (with [`Tally::add`]) in the fleet's result for the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Whole-flow attempts started (1 without retries).
    pub attempts: u32,
    /// MQTT connects attempted, claim and own certificate, connect retries included.
    pub connects: u32,
    /// Accepted CreateKeysAndCertificate / CreateCertificateFromCsr responses.
    pub certificates_issued: u32,
    /// Accepted RegisterThing responses.
    pub registered: u32,
    /// The most connects one of this device's client IDs (claim, own) made in any one-second
    /// window.
    pub max_connects_per_s: u32,
}

impl Tally {
    /// Add a later attempt's counts to these (the per-second maximum is the larger of the two:
    /// a window spanning two attempts is seen by [`ConnectWindows`], which outlive attempts).
    pub fn add(&mut self, later: &Tally) {
        self.attempts += later.attempts;
        self.connects += later.connects;
        self.certificates_issued += later.certificates_issued;
        self.registered += later.registered;
        self.max_connects_per_s = self.max_connects_per_s.max(later.max_connects_per_s);
    }
}

/// The run's live counts of what AWS charges, as they happen (every device of a run shares one):
/// the per-second columns of `timeseries.csv`, the dashboard and the metrics endpoint read
/// them. The device driver counts connects and certificates; the fleet counts whole-flow retries.
#[derive(Debug, Default)]
pub struct Activity {
    /// MQTT connects attempted (claim and own certificate, connect retries included).
    pub connects: std::sync::atomic::AtomicU64,
    /// Accepted CreateKeysAndCertificate / CreateCertificateFromCsr responses.
    pub certificates_issued: std::sync::atomic::AtomicU64,
    /// Whole-flow attempts after the first (retries of a failed attempt).
    pub retries: std::sync::atomic::AtomicU64,
}

/// The connects of one client ID in the last second, to find the most in any one-second
/// window without allocating: a fixed ring of the last `N` connect instants (a device that
/// connects more than `N` times a second is reported as `N`, far above AWS's 1/s limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectWindow {
    recent: [Option<Instant>; ConnectWindow::N],
    next: usize,
    max: u32,
}

impl ConnectWindow {
    const N: usize = 8;

    /// Record a connect at `at`; returns the most connects seen in any one-second window so far.
    pub fn connect(&mut self, at: Instant) -> u32 {
        self.recent[self.next] = Some(at);
        self.next = (self.next + 1) % Self::N;
        let in_window = self
            .recent
            .iter()
            .flatten()
            .filter(|t| at.saturating_duration_since(**t).as_secs_f64() < 1.0)
            .count() as u32;
        self.max = self.max.max(in_window);
        self.max
    }

    pub fn max(&self) -> u32 {
        self.max
    }
}

/// A device's connect windows, one per client ID: the claim connection's (the device's client
/// ID) and the own-certificate connection's (the thing name), which AWS limits separately. A
/// device whose own connection uses the claim's client ID counts both in the claim's window.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectWindows {
    claim: ConnectWindow,
    own: ConnectWindow,
}

impl ConnectWindows {
    /// Record a connect at `at` with `client_id`, for a device whose claim connection uses
    /// `claim_client_id`.
    pub fn connect(&mut self, claim_client_id: &str, client_id: &str, at: Instant) {
        let window = if client_id == claim_client_id {
            &mut self.claim
        } else {
            &mut self.own
        };
        window.connect(at);
    }

    /// The most connects any one of the device's client IDs made in a one-second window.
    pub fn max(&self) -> u32 {
        self.claim.max().max(self.own.max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_window_counts_connects_less_than_a_second_apart() {
        let t0 = Instant::now();
        let mut w = ConnectWindow::default();
        assert_eq!(w.connect(t0), 1);
        assert_eq!(w.connect(t0 + Duration::from_millis(400)), 2);
        assert_eq!(w.connect(t0 + Duration::from_millis(999)), 3);
        // 1.5 s: the first two are out of the window, the third is in: 2, the max stays 3.
        assert_eq!(w.connect(t0 + Duration::from_millis(1500)), 3);
        assert_eq!(w.max(), 3);
        let mut spread = ConnectWindow::default();
        for s in 0..20 {
            spread.connect(t0 + Duration::from_secs(s));
        }
        assert_eq!(spread.max(), 1);
    }

    #[test]
    fn the_claim_and_the_own_client_id_have_a_window_each() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Claim, own (the thing name) 100 ms later, claim again: 2 for the claim's client ID.
        let mut w = ConnectWindows::default();
        w.connect("dev-1", "dev-1", t0);
        w.connect("dev-1", "thing-1", t0 + ms(100));
        assert_eq!(w.max(), 1, "two client IDs, one connect each");
        w.connect("dev-1", "dev-1", t0 + ms(200));
        assert_eq!(w.max(), 2);
        // An own connection with the claim's client ID is the same client ID.
        let mut same = ConnectWindows::default();
        same.connect("dev-1", "dev-1", t0);
        same.connect("dev-1", "dev-1", t0 + ms(100));
        assert_eq!(same.max(), 2);
    }

    #[test]
    fn tallies_add_up_over_attempts() {
        let mut a = Tally {
            attempts: 1,
            connects: 2,
            certificates_issued: 1,
            registered: 0,
            max_connects_per_s: 2,
        };
        a.add(&Tally {
            attempts: 1,
            connects: 2,
            certificates_issued: 1,
            registered: 1,
            max_connects_per_s: 1,
        });
        assert_eq!(
            a,
            Tally {
                attempts: 2,
                connects: 4,
                certificates_issued: 2,
                registered: 1,
                max_connects_per_s: 2
            }
        );
    }
}
