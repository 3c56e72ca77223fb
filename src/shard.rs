//! Shards: one run's devices split across processes (`run --shard I/N`), and the shared start
//! instant (`--start-at`) that lines their schedules up.
//!
//! Shard I of N owns arrival k of the unsharded schedule iff `k % N == I`, and that device's
//! `{seq}` is k: a device's identity depends only on the seed and its seq, so the shards' devices
//! are disjoint and their union is exactly the unsharded run's. Interleaving (rather than one
//! contiguous block of seqs per shard) also splits every phase's rate and burst exactly and keeps
//! the union right when the schedule, not `devices.count`, ends the run. A closed-model phase keeps
//! `ceil((target - I) / N)` devices in flight on shard I (the shares add up to the target) with
//! seqs I, I+N, I+2N, ...

use std::time::{Duration, Instant, SystemTime};

/// Shard `index` of `count` (0 <= index < count). `Shard::WHOLE` (0 of 1) is an unsharded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// The environment variable a Kubernetes Indexed Job sets to the pod's index (`--shards N`).
pub const INDEX_VAR: &str = "JOB_COMPLETION_INDEX";

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; an error unless 0 <= index < count.
    pub fn new(index: u64, count: u64) -> Result<Shard, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} out of range: shards of {count} are numbered 0 to {}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// `--shard I/N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text:?}: expected I/N, e.g. 0/4 (0-based index I < N)");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Shard::new(i, n).map_err(|e| format!("--shard {text}: {e}"))
    }

    /// `--shards N` with the index from [`INDEX_VAR`] (`value`: the variable, None when unset).
    pub fn from_index_var(count: u64, value: Option<&str>) -> Result<Shard, String> {
        let value = value.ok_or_else(|| {
            format!("--shards {count}: the shard index comes from {INDEX_VAR}, which is not set (a Kubernetes Indexed Job sets it; else use --shard I/N)")
        })?;
        let index = value.trim().parse().map_err(|_| {
            format!(
                "--shards {count}: {INDEX_VAR}={value:?} is not a shard index (0 to {})",
                count.saturating_sub(1)
            )
        })?;
        Shard::new(index, count)
            .map_err(|e| format!("--shards {count} with {INDEX_VAR}={value}: {e}"))
    }

    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// Whether this shard owns unsharded arrival (and seq) `k`.
    pub fn owns(self, k: u64) -> bool {
        k % self.count == self.index
    }

    /// The first seq at or after `seq` this shard owns.
    pub fn next_owned(self, seq: u64) -> u64 {
        let ahead = (self.index + self.count - seq % self.count) % self.count;
        seq.saturating_add(ahead)
    }

    /// This shard's part of `total` interleaved items (seqs `0..total`, or a closed model's
    /// devices in flight): `ceil((total - index) / count)`. The shards' parts add up to `total`.
    pub fn share(self, total: u64) -> u64 {
        total.saturating_sub(self.index).div_ceil(self.count)
    }

    /// This shard's in-flight cap: `max_in_flight / count`, the remainder to the lowest
    /// indexes, at least 1.
    pub fn max_in_flight(self, max_in_flight: usize) -> usize {
        if self.is_whole() {
            return max_in_flight;
        }
        let (n, i) = (self.count as usize, self.index as usize);
        (max_in_flight / n + usize::from(i < max_in_flight % n)).max(1)
    }

    /// This shard's arrivals among `arrivals`, whose first is the unsharded run's seq `base`:
    /// (seq, offset) pairs. The others' are skipped with `nth`, which the lazy arrivals do a
    /// piece at a time: a shard computes its own arrivals only.
    pub fn arrivals<I: Iterator<Item = Duration>>(self, arrivals: I, base: u64) -> OwnArrivals<I> {
        let seq = self.next_owned(base);
        OwnArrivals {
            inner: arrivals,
            seq,
            skip: usize::try_from(seq - base).unwrap_or(usize::MAX),
            step: self.count,
        }
    }

    /// `-shard-I-of-N`, for the default results folder (empty when unsharded).
    pub fn folder_suffix(self) -> String {
        if self.is_whole() {
            String::new()
        } else {
            format!("-shard-{}-of-{}", self.index, self.count)
        }
    }
}

/// See [`Shard::arrivals`].
#[derive(Debug)]
pub struct OwnArrivals<I> {
    inner: I,
    /// The next arrival's seq, and how many arrivals lie before it.
    seq: u64,
    skip: usize,
    step: u64,
}

impl<I: Iterator<Item = Duration>> Iterator for OwnArrivals<I> {
    type Item = (u64, Duration);

    fn next(&mut self) -> Option<(u64, Duration)> {
        let offset = self.inner.nth(self.skip)?;
        let seq = self.seq;
        self.seq = seq.saturating_add(self.step);
        self.skip = usize::try_from(self.step - 1).unwrap_or(usize::MAX);
        Some((seq, offset))
    }
}

/// The most devices an unsharded run of `scenario` starts: `devices.count`, or the arrivals
/// the schedule offers when every phase is open and they are fewer.
pub fn devices_started(scenario: &crate::scenario::Plan) -> u64 {
    let closed = scenario
        .planned_phases()
        .iter()
        .any(|p| matches!(p, crate::scenario::PlannedPhase::Closed { .. }));
    if closed {
        return scenario.devices.count;
    }
    scenario.arrival_span().0.min(scenario.devices.count)
}

/// Refuse a split into `count` shards (`flag` as the user wrote it) that leaves a shard with no
/// devices: more shards than the devices one variant of the run starts. Such a shard would
/// plan nothing, fail its thresholds and mark its Indexed Job index failed; `k8s render` and
/// `run` refuse it alike (exit 2), before anything runs.
pub fn check_devices(
    count: u64,
    flag: &str,
    scenarios: &[crate::scenario::Plan],
) -> Result<(), String> {
    for s in scenarios {
        let devices = devices_started(s);
        if count <= devices {
            continue;
        }
        let variant = s
            .variant
            .as_deref()
            .map(|v| format!("variant {v:?}'s "))
            .unwrap_or_else(|| "the scenario's ".into());
        let what = if devices < s.devices.count {
            format!(
                "{variant}{devices} devices (the arrivals its schedule offers; devices.count is {})",
                s.devices.count
            )
        } else {
            format!("{variant}{devices} devices (devices.count)")
        };
        return Err(format!(
            "{flag}: more shards than {what}; a shard would own none (shards {devices} to {} of {count}): use at most {devices} shards",
            count - 1
        ));
    }
    Ok(())
}

/// How far ahead a `--start-at` may lie without `--wait-long`: further is more likely a typo
/// (a year, a month) than a plan, and every shard would sit waiting for it.
pub const FAR_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// When the schedule starts: now, or at `--start-at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAt(pub SystemTime);

impl StartAt {
    /// `--start-at` as written: RFC 3339, e.g. `2026-11-30T12:00:00Z`.
    pub fn parse(text: &str) -> Result<StartAt, String> {
        humantime::parse_rfc3339_weak(text.trim())
            .map(StartAt)
            .map_err(|e| {
                format!("--start-at {text:?}: {e} (expected RFC 3339, e.g. 2026-11-30T12:00:00Z)")
            })
    }

    /// Refuse a start more than [`FAR_AHEAD`] after `now` unless `confirmed` (`--wait-long`).
    pub fn check_ahead(self, now: SystemTime, confirmed: bool) -> Result<(), String> {
        match self.0.duration_since(now) {
            Ok(ahead) if ahead > FAR_AHEAD && !confirmed => Err(format!(
                "--start-at {}: {} ahead, more than a day: every shard would wait that long; add --wait-long if that is what you mean",
                self.rfc3339(),
                humantime::format_duration(Duration::from_secs(ahead.as_secs() / 60 * 60))
            )),
            _ => Ok(()),
        }
    }

    pub fn rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.0).to_string()
    }

    /// The monotonic instant of this wall-clock time (in the past or the future), and how late
    /// `now` is relative to it (zero when it is still ahead). None when it lies before this
    /// machine's monotonic clock began (a start time long past).
    pub fn origin(self) -> Option<(Instant, Duration)> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        match self.0.duration_since(wall) {
            Ok(ahead) => Some((now.checked_add(ahead)?, Duration::ZERO)),
            Err(e) => {
                let late = e.duration();
                Some((now.checked_sub(late)?, late))
            }
        }
    }
}

/// The run ID every shard of one job derives alike without talking to the others: from the
/// scenario file's hash and the start instant (6 lowercase base32 characters, as
/// `new_run_id`'s).
pub fn derived_run_id(scenario_sha256: &str, start_at: StartAt) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(scenario_sha256.as_bytes());
    h.update(b"\n");
    h.update(start_at.rfc3339().as_bytes());
    crate::scenario::run_id_from_bytes(&h.finalize()[..6])
}

/// The run ID of `fleetstorm run`: `--run-id`; else, for a shard with `--start-at`, the one
/// [`derived_run_id`] gives every shard of the job; else a new random one (with a warning on
/// stderr when the run is a shard whose scenario uses `{run}`: each shard then has its own).
pub fn run_id(
    given: Option<&str>,
    shard: Option<Shard>,
    start_at: Option<StartAt>,
    scenario_sha256: Option<&str>,
    scenarios: &[crate::scenario::Plan],
) -> String {
    if let Some(id) = given {
        return id.to_string();
    }
    if shard.is_some()
        && let (Some(at), Some(sha)) = (start_at, scenario_sha256)
    {
        return derived_run_id(sha, at);
    }
    if shard.is_some() && scenarios.iter().any(crate::scenario::Plan::uses_run) {
        eprintln!(
            "fleetstorm: warning: the scenario uses {{run}} and this shard has its own random run ID: give every shard the same --run-id (or the same --start-at) so their devices share it"
        );
    }
    crate::scenario::new_run_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_i_of_n_and_refuses_the_rest() {
        assert_eq!(Shard::parse("0/1").unwrap(), Shard::WHOLE);
        assert_eq!(Shard::parse("3/4").unwrap(), Shard { index: 3, count: 4 });
        for bad in [
            "1/0", "3/2", "2/2", "x", "1", "1/", "/2", "-1/2", "a/b", "1/2/3",
        ] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains("--shard"), "{bad}: {e}");
        }
        assert!(Shard::parse("3/2").unwrap_err().contains("out of range"));
    }

    #[test]
    fn the_index_variable_must_be_a_valid_index() {
        assert_eq!(
            Shard::from_index_var(4, Some("2")).unwrap(),
            Shard { index: 2, count: 4 }
        );
        for (count, value) in [
            (4, None),
            (4, Some("x")),
            (4, Some("4")),
            (4, Some("")),
            (0, Some("0")),
        ] {
            let e = Shard::from_index_var(count, value).unwrap_err();
            assert!(e.contains(INDEX_VAR), "{value:?}: {e}");
        }
    }

    #[test]
    fn seqs_split_interleaved_and_the_shares_add_up() {
        for count in 1..=7u64 {
            for total in 0..=40u64 {
                let shards = (0..count).map(|i| Shard::new(i, count).unwrap());
                let mut seen = vec![0u32; total as usize];
                let mut shares = 0;
                for s in shards {
                    // Walking a shard's seqs the way the scheduler does.
                    let mut seq = s.next_owned(0);
                    let mut n = 0;
                    while seq < total {
                        assert!(s.owns(seq));
                        seen[seq as usize] += 1;
                        n += 1;
                        seq += count;
                    }
                    assert_eq!(n, s.share(total), "{s:?} of {total}");
                    shares += s.share(total);
                }
                assert_eq!(shares, total);
                assert!(seen.iter().all(|&c| c == 1), "{count} {total}: {seen:?}");
            }
        }
        let s = Shard::new(2, 4).unwrap();
        assert_eq!(
            [0, 1, 2, 3, 6, 7].map(|q| s.next_owned(q)),
            [2, 2, 2, 6, 6, 10]
        );
    }

    #[test]
    fn in_flight_caps_split_with_the_remainder_to_the_lowest_indexes() {
        let caps = |m, n| {
            (0..n)
                .map(|i| Shard::new(i, n).unwrap().max_in_flight(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(caps(10, 4), [3, 3, 2, 2]);
        assert_eq!(caps(8, 4), [2, 2, 2, 2]);
        assert_eq!(caps(2, 4), [1, 1, 1, 1]);
        assert_eq!(caps(1000, 1), [1000]);
        assert_eq!(caps(10, 4).iter().sum::<usize>(), 10);
    }

    #[test]
    fn start_at_parses_rfc3339_and_maps_to_an_instant() {
        let t = StartAt::parse("2026-11-30T12:00:00Z").unwrap();
        assert_eq!(t.rfc3339(), "2026-11-30T12:00:00.000Z");
        assert!(
            StartAt::parse("tomorrow")
                .unwrap_err()
                .contains("--start-at")
        );
        let ahead = StartAt(SystemTime::now() + Duration::from_secs(60));
        let (at, late) = ahead.origin().unwrap();
        assert_eq!(late, Duration::ZERO);
        let left = at - Instant::now();
        assert!(
            left > Duration::from_secs(59) && left <= Duration::from_secs(60),
            "{left:?}"
        );
        let past = StartAt(SystemTime::now() - Duration::from_secs(5));
        let (at, late) = past.origin().unwrap();
        assert!(
            late >= Duration::from_secs(5) && late < Duration::from_secs(6),
            "{late:?}"
        );
        assert!(at.elapsed() >= Duration::from_secs(5));
    }

    fn scenarios(body: &str) -> Vec<crate::scenario::Plan> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, body).unwrap();
        crate::scenario::Scenario::load_variants(&path, &[]).unwrap()
    }

    /// `count` devices at 10/s for `duration`, and `variants` (TOML) after it.
    fn scenario(count: u64, duration: &str, variants: &str) -> Vec<crate::scenario::Plan> {
        scenarios(&format!(
            "[target]\nkind = \"mock\"\n[devices]\ncount = {count}\nclient_id = \"d-{{seq}}\"\n[[schedule]]\nexecutor = \"constant-arrival-rate\"\nrate = 10\nduration = \"{duration}\"\n{variants}"
        ))
    }

    #[test]
    fn more_shards_than_devices_started_are_refused() {
        let fifty = scenario(50, "5s", "");
        assert_eq!(devices_started(&fifty[0]), 50);
        check_devices(50, "--shards 50", &fifty).unwrap();
        for (count, flag) in [(51, "--shards 51"), (100, "--shard 60/100")] {
            let e = check_devices(count, flag, &fifty).unwrap_err();
            assert!(
                e.starts_with(flag) && e.contains("50 devices (devices.count)"),
                "{e}"
            );
            assert!(e.contains("at most 50 shards"), "{e}");
        }
        let e = check_devices(1_000_000_000, "--shard 0/1000000000", &fifty).unwrap_err();
        assert!(e.contains("shards 50 to 999999999"), "{e}");
        // The schedule, not devices.count, ends this run: 2 s at 10/s are 20 arrivals.
        let capped = scenario(1000, "2s", "");
        assert_eq!(devices_started(&capped[0]), 20);
        let e = check_devices(21, "--shards 21", &capped).unwrap_err();
        assert!(
            e.contains("20 devices (the arrivals its schedule offers; devices.count is 1000)"),
            "{e}"
        );
        // A variant with fewer devices than the first decides.
        let variants = scenario(
            50,
            "5s",
            "[[variants]]\nname = \"big\"\n[[variants]]\nname = \"small\"\nset = { \"devices.count\" = 8 }\n",
        );
        check_devices(8, "--shards 8", &variants).unwrap();
        let e = check_devices(9, "--shards 9", &variants).unwrap_err();
        assert!(e.contains("variant \"small\"'s 8 devices"), "{e}");
    }

    #[test]
    fn a_start_more_than_a_day_ahead_needs_confirming() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |s: u64| StartAt(now + Duration::from_secs(s));
        at(23 * 3600).check_ahead(now, false).unwrap();
        at(FAR_AHEAD.as_secs()).check_ahead(now, false).unwrap();
        StartAt(now - Duration::from_secs(600))
            .check_ahead(now, false)
            .unwrap();
        let e = at(FAR_AHEAD.as_secs() + 60)
            .check_ahead(now, false)
            .unwrap_err();
        assert!(
            e.contains("1day 1m ahead") && e.contains("--wait-long"),
            "{e}"
        );
        let far = StartAt::parse("9999-01-01T00:00:00Z").unwrap();
        assert!(
            far.check_ahead(now, false)
                .unwrap_err()
                .contains("9999-01-01")
        );
        far.check_ahead(now, true).unwrap();
    }

    #[test]
    fn shards_of_one_job_derive_the_same_run_id() {
        let t = StartAt::parse("2026-11-30T12:00:00Z").unwrap();
        let a = derived_run_id("ab12", t);
        assert_eq!(a, derived_run_id("ab12", t));
        assert!(crate::scenario::valid_run_id(&a), "{a}");
        assert_ne!(a, derived_run_id("ab13", t));
        let later = StartAt(t.0 + Duration::from_secs(1));
        assert_ne!(a, derived_run_id("ab12", later));
    }
}
