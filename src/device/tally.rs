//! What one device did that AWS counts against its quotas: whole-flow attempts, MQTT connects,
//! certificates issued and registrations accepted, counted on the device side (so they are true
//! against real AWS too). The amplification figures of a run are sums and maxima of these, and
//! its cost is priced from the metered messages and connection-minutes counted here.

use std::time::{Duration, Instant};

/// AWS IoT Core meters messages in 5 KB units: a PUBLISH of 6 KB (topic and payload) counts as
/// two (`pricing/aws-iot-core.toml` says the same; a test checks they agree). Whether a KB is
/// 1,000 or 1,024 bytes is UNCONFIRMED; 1,024 is taken.
pub const MESSAGE_UNIT_BYTES: usize = 5 * 1024;

/// The metered messages a packet of `bytes` (as AWS sizes it) counts as: at least one.
pub fn message_units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(MESSAGE_UNIT_BYTES).max(1)).unwrap_or(u32::MAX)
}

/// The connection-minutes a connection that lasted `d` counts as: AWS meters connectivity in
/// one-minute increments (each connection rounded up to a whole minute: UNCONFIRMED whether AWS
/// rounds per connection or over the month's total; per connection is the dearer reading).
pub fn connection_minutes(d: Duration) -> u32 {
    u32::try_from(d.as_millis().div_ceil(60_000).max(1)).unwrap_or(u32::MAX)
}

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
    /// Metered MQTT messages (in [`MESSAGE_UNIT_BYTES`] units) the device's accepted
    /// connections sent and received: CONNECT, SUBSCRIBE, PUBLISH either way and the PUBACKs the
    /// device sent; not CONNACK, SUBACK, UNSUBSCRIBE, PINGREQ/PINGRESP, DISCONNECT or the
    /// endpoint's PUBACKs (AWS's metering page excludes them).
    pub messages: u32,
    /// Connection-minutes of the device's accepted connections, each rounded up to a minute.
    pub connection_minutes: u32,
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
        self.messages += later.messages;
        self.connection_minutes += later.connection_minutes;
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
            messages: 5,
            connection_minutes: 1,
        };
        a.add(&Tally {
            attempts: 1,
            connects: 2,
            certificates_issued: 1,
            registered: 1,
            max_connects_per_s: 1,
            messages: 9,
            connection_minutes: 2,
        });
        assert_eq!(
            a,
            Tally {
                attempts: 2,
                connects: 4,
                certificates_issued: 2,
                registered: 1,
                max_connects_per_s: 2,
                messages: 14,
                connection_minutes: 3,
            }
        );
    }

    #[test]
    fn messages_are_metered_in_5_kb_units_and_connections_in_whole_minutes() {
        assert_eq!(message_units(0), 1, "an empty message is still one");
        assert_eq!(message_units(5 * 1024), 1);
        assert_eq!(message_units(5 * 1024 + 1), 2);
        assert_eq!(message_units(6 * 1024), 2);
        assert_eq!(connection_minutes(Duration::from_millis(300)), 1);
        assert_eq!(connection_minutes(Duration::from_secs(60)), 1);
        assert_eq!(connection_minutes(Duration::from_secs(61)), 2);
    }
}
