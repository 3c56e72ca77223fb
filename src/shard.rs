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

    /// `-shard-I-of-N`, for the default results folder (empty when unsharded).
    pub fn folder_suffix(self) -> String {
        if self.is_whole() {
            String::new()
        } else {
            format!("-shard-{}-of-{}", self.index, self.count)
        }
    }
}

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
    scenarios: &[crate::scenario::Scenario],
) -> String {
    if let Some(id) = given {
        return id.to_string();
    }
    if shard.is_some()
        && let (Some(at), Some(sha)) = (start_at, scenario_sha256)
    {
        return derived_run_id(sha, at);
    }
    if shard.is_some() && scenarios.iter().any(uses_run) {
        eprintln!(
            "fleetstorm: warning: the scenario uses {{run}} and this shard has its own random run ID: give every shard the same --run-id (or the same --start-at) so their devices share it"
        );
    }
    crate::scenario::new_run_id()
}

/// Whether the scenario's client ID or parameters use `{run}`.
fn uses_run(s: &crate::scenario::Scenario) -> bool {
    let uses = |text: &str| crate::scenario::Pattern::parse(text).is_ok_and(|p| p.uses_run());
    uses(&s.devices.client_id) || s.devices.parameters.values().any(|v| uses(v))
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
