//! The remote-run guard: a run against a non-loopback endpoint needs explicit confirmation.
//!
//! A run against AWS creates a thing and at least one certificate per device in someone's
//! account. Before anything is sent (no DNS lookup, no connection), `fleetstorm run` shows where
//! the run goes and the most it can create, and goes on only with `--yes` or
//! `confirm_remote = true` in the scenario's `[target]`. It also shows what the plan will cost
//! on AWS IoT Core (`results::cost`, from the planned devices' flows). The decision is textual: the host is
//! loopback when it is `localhost` or an address in 127.0.0.0/8 or `::1`; every other name counts
//! as remote, because resolving it would already reach out.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::device::profile::Subscriptions;
use crate::results::cost::{self, Cost, Prices, Usage};
use crate::scenario::{Plan, PlannedPhase, Target};
use crate::shard::Shard;

/// What the guard decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Every variant targets loopback (or the embedded mock): nothing to confirm.
    Local,
    /// Remote, and confirmed by `--yes` or `confirm_remote`.
    Confirmed(RemotePlan),
    /// Remote and not confirmed: the run must not start.
    Refused(RemotePlan),
}

/// Where a remote run goes and the most it can create.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemotePlan {
    /// `host:port` of each distinct remote endpoint.
    pub endpoints: Vec<String>,
    /// AWS region from an AWS IoT host name (`*.iot.<region>.amazonaws.com`).
    pub region: Option<String>,
    /// AWS account from `[target] account`.
    pub account: Option<String>,
    /// Variants that go to a remote endpoint.
    pub variants: usize,
    /// Devices planned across those variants (this shard's share of them in a sharded run).
    pub devices: u64,
    /// The shard of the job this process runs (`Shard::WHOLE` unsharded).
    pub shard: Shard,
    /// At most one thing per device.
    pub things: u64,
    /// At most one certificate per attempt of every device (`devices.retry.max_attempts`).
    pub certificates: u64,
    /// What the planned devices' flows cost on AWS, each device succeeding at its first
    /// attempt (an estimate: the run's summary prices what the devices did).
    pub cost: Cost,
    /// The same when every device makes every attempt its retries allow.
    pub cost_at_most: f64,
}

/// Decide whether `scenarios` (the variants of one run) may start. `endpoint`: `--endpoint`'s
/// host and port; `yes`: `--yes`; `shard`: the part of the job this process runs (its share of
/// the devices is what it can create).
pub fn check(
    scenarios: &[Plan],
    endpoint: Option<&(String, Option<u16>)>,
    yes: bool,
    shard: Shard,
) -> Decision {
    let mut plan = RemotePlan {
        shard,
        ..RemotePlan::default()
    };
    // Confirmation in the scenario counts only when every remote variant carries it.
    let mut every_variant_confirms = true;
    let (mut planned, mut most) = (Usage::default(), Usage::default());
    for s in scenarios {
        let (host, port, account, confirm) = match (&s.target, endpoint) {
            (
                Target::Endpoint {
                    port,
                    account,
                    confirm_remote,
                    ..
                },
                Some((h, p)),
            ) => (h.as_str(), p.unwrap_or(*port), account, *confirm_remote),
            (
                Target::Endpoint {
                    host,
                    port,
                    account,
                    confirm_remote,
                    ..
                },
                None,
            ) => (host.as_str(), *port, account, *confirm_remote),
            (Target::Mock { .. }, Some((h, p))) => (h.as_str(), p.unwrap_or(8883), &None, false),
            (Target::Mock { .. }, None) => continue,
        };
        if is_loopback(host) {
            continue;
        }
        every_variant_confirms &= confirm;
        let label = format!("{host}:{port}");
        if !plan.endpoints.contains(&label) {
            plan.endpoints.push(label);
        }
        plan.region = plan.region.or_else(|| aws_region(host));
        plan.account = plan.account.or_else(|| account.clone());
        plan.variants += 1;
        let devices = shard.share(max_devices(s));
        plan.devices = plan.devices.saturating_add(devices);
        plan.things = plan.things.saturating_add(devices);
        let attempts = u64::from(s.profile.flow_retry.attempts);
        plan.certificates = plan
            .certificates
            .saturating_add(devices.saturating_mul(attempts));
        let per_step = s.profile.subscriptions == Subscriptions::PerStep;
        let device = cost::planned_device(per_step, &s.devices.after);
        planned = add(planned, device.times(devices));
        most = add(most, device.times(devices.saturating_mul(attempts)));
    }
    let on_aws = plan.region.is_some();
    plan.cost = cost::price(&planned, Prices::shipped(), on_aws);
    plan.cost_at_most = cost::price(&most, Prices::shipped(), on_aws).total;
    if plan.variants == 0 {
        Decision::Local
    } else if yes || every_variant_confirms {
        Decision::Confirmed(plan)
    } else {
        Decision::Refused(plan)
    }
}

fn add(a: Usage, b: Usage) -> Usage {
    Usage {
        connection_minutes: a.connection_minutes.saturating_add(b.connection_minutes),
        messages: a.messages.saturating_add(b.messages),
        registrations: a.registrations.saturating_add(b.registrations),
    }
}

/// The most devices a scenario starts: `devices.count`, or fewer when only open-model phases
/// schedule arrivals (the plan is already capped at the count).
fn max_devices(s: &Plan) -> u64 {
    let plan = s.planned_phases();
    if plan
        .iter()
        .any(|p| matches!(p, PlannedPhase::Closed { .. }))
    {
        return s.devices.count;
    }
    plan.iter()
        .map(|p| match p {
            PlannedPhase::Open(a) => a.len(),
            PlannedPhase::Closed { .. } => 0,
        })
        .sum()
}

/// `--endpoint HOST[:PORT]` (an IPv6 address in brackets when it has a port) as host and port.
pub fn parse_endpoint(s: &str) -> Result<(String, Option<u16>), String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.starts_with('[') => {
            let port = port
                .parse()
                .map_err(|_| format!("--endpoint {s}: bad port {port:?}"))?;
            Ok((
                host.trim_matches(|c| c == '[' || c == ']').to_string(),
                Some(port),
            ))
        }
        _ => Ok((s.to_string(), None)),
    }
}

/// `localhost`, 127.0.0.0/8 or `::1` (also IPv4-mapped, and in brackets).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = host.trim_end_matches('.');
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback(),
        Ok(IpAddr::V6(a)) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
        Err(_) => false,
    }
}

/// The region of an AWS IoT data endpoint: `<prefix>-ats.iot.<region>.amazonaws.com`
/// (also `.amazonaws.com.cn`).
pub fn aws_region(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let iot = labels.iter().position(|l| *l == "iot")?;
    let region = labels.get(iot + 1)?;
    let rest = &labels[iot + 2..];
    let aws = rest == ["amazonaws", "com"] || rest == ["amazonaws", "com", "cn"];
    let shaped = region.split('-').count() >= 3
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (iot > 0 && aws && shaped).then(|| region.to_string())
}

/// Whether `endpoint` (`HOST:PORT`, or a host) is an AWS IoT data endpoint: what a run there
/// costs is billed (elsewhere it is what it would cost on AWS).
pub fn is_aws_endpoint(endpoint: &str) -> bool {
    let host = parse_endpoint(endpoint).map_or_else(|_| endpoint.to_string(), |(h, _)| h);
    aws_region(&host).is_some()
}

/// The ARN of a certificate, when account and region are known.
pub fn certificate_arn(region: Option<&str>, account: Option<&str>, id: &str) -> String {
    match (region, account) {
        (Some(r), Some(a)) => format!("arn:aws:iot:{r}:{a}:cert/{id}"),
        _ => String::new(),
    }
}

impl RemotePlan {
    /// The lines the guard prints, confirmed or not.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let unknown = "unknown";
        let _ = writeln!(
            out,
            "fleetstorm run: this run goes to a remote endpoint and creates things and certificates there"
        );
        let _ = writeln!(out, "  endpoint:     {}", self.endpoints.join(", "));
        let _ = writeln!(
            out,
            "  region:       {}",
            self.region.as_deref().unwrap_or(unknown)
        );
        let _ = writeln!(
            out,
            "  account:      {}",
            self.account
                .as_deref()
                .unwrap_or("unknown (set `account` in [target])")
        );
        let _ = writeln!(
            out,
            "  at most:      {} things and {} certificates ({} devices{}{}; certificates count every attempt)",
            self.things,
            self.certificates,
            self.devices,
            if self.variants > 1 {
                format!(" over {} variants", self.variants)
            } else {
                String::new()
            },
            if self.shard.is_whole() {
                String::new()
            } else {
                format!(
                    ", this process's shard {}/{} of the job",
                    self.shard.index, self.shard.count
                )
            }
        );
        let c = &self.cost;
        let _ = writeln!(
            out,
            "  cost:         about {} for {} connection-minutes, {} messages and {} registry operations (every device provisioned at its first attempt; up to ${} if every device makes every attempt)",
            cost::render(c),
            c.connectivity.quantity,
            c.messaging.quantity,
            c.registry.quantity,
            cost::amount(self.cost_at_most)
        );
        let _ = writeln!(
            out,
            "  record:       RUN_DIR/created.csv; remove them with `fleetstorm aws cleanup RUN_DIR`"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(target: &str, count: u64, attempts: u32) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            format!(
                "[target]\n{target}\n[devices]\ncount = {count}\n[devices.retry]\nmax_attempts = {attempts}\n[[schedule]]\nexecutor = \"burst\"\ncount = {count}\n"
            ),
        )
        .unwrap();
        crate::scenario::Scenario::load(&path, &[]).unwrap()
    }

    const AWS: &str = "kind = \"endpoint\"\nhost = \"abc123-ats.iot.eu-west-1.amazonaws.com\"\nca = \"ca.pem\"\nclaim_cert = \"c.pem\"\nclaim_key = \"c.key\"\naccount = \"123456789012\"";

    #[test]
    fn loopback_hosts_are_local_and_everything_else_is_remote() {
        for h in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "0.0.0.0",
            "localhost.example.com",
            "abc-ats.iot.us-east-1.amazonaws.com",
            "::",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn the_region_comes_from_an_aws_iot_host_only() {
        assert_eq!(
            aws_region("abc123-ats.iot.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            aws_region("x.iot.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(aws_region("iot.example.com"), None);
        assert_eq!(aws_region("x.iot.eu-west-1.example.com"), None);
        assert_eq!(
            certificate_arn(Some("eu-west-1"), Some("123456789012"), "ab"),
            "arn:aws:iot:eu-west-1:123456789012:cert/ab"
        );
        assert_eq!(certificate_arn(None, Some("123456789012"), "ab"), "");
    }

    #[test]
    fn a_shard_shows_and_counts_only_its_share_of_the_devices() {
        // 20 devices over 3 shards: 7, 7, 6 (seqs 0, 3, 6, ... for shard 0).
        let s = vec![scenario(AWS, 20, 3)];
        let shares: Vec<u64> = (0..3)
            .map(|i| {
                let Decision::Refused(plan) = check(&s, None, false, Shard::new(i, 3).unwrap())
                else {
                    panic!("not refused")
                };
                assert_eq!(plan.certificates, plan.things * 3);
                assert!(
                    plan.render().contains(&format!("shard {i}/3 of the job")),
                    "{}",
                    plan.render()
                );
                plan.things
            })
            .collect();
        assert_eq!(shares, [7, 7, 6]);
        let Decision::Refused(whole) = check(&s, None, false, Shard::WHOLE) else {
            panic!("not refused")
        };
        assert!(!whole.render().contains("shard"), "{}", whole.render());
    }

    #[test]
    fn the_guard_shows_the_planned_cost_before_anything_is_sent() {
        // 20 devices, 3 attempts each at most, disconnecting once provisioned: 2 connection-
        // minutes, 9 messages (generic profile: one SUBSCRIBE per connection) and 1
        // registration each (cost::planned_device).
        let s = vec![scenario(AWS, 20, 3)];
        let Decision::Refused(plan) = check(&s, None, false, Shard::WHOLE) else {
            panic!("not refused")
        };
        let c = &plan.cost;
        assert_eq!((c.connectivity.quantity, c.messaging.quantity), (40, 180));
        let p = Prices::shipped();
        let registry = 20 * p.registry.per_registration.unwrap_or(0);
        let by_hand = 40.0 * p.connectivity.per_million / 1e6
            + 180.0 * p.messaging.per_million / 1e6
            + registry as f64 * p.registry.per_million / 1e6;
        assert!((c.total - by_hand).abs() < 1e-15, "{c:?}");
        assert!((plan.cost_at_most - 3.0 * by_hand).abs() < 1e-15);
        assert_eq!(c.label, "on AWS", "an AWS IoT host is billed");
        let text = plan.render();
        assert!(
            text.contains(&format!("cost:         about ${}", cost::amount(by_hand)))
                && text.contains("on AWS (USD, prices of")
                && text.contains("40 connection-minutes, 180 messages")
                && text.contains(&format!("up to ${}", cost::amount(3.0 * by_hand))),
            "{text}"
        );
        // A remote host that is not AWS IoT's is what the run would cost there.
        let host = AWS.replace(
            "abc123-ats.iot.eu-west-1.amazonaws.com",
            "broker.example.com",
        );
        let other = vec![scenario(&host, 20, 3)];
        let Decision::Refused(plan) = check(&other, None, false, Shard::WHOLE) else {
            panic!("not refused")
        };
        assert!(
            plan.render().contains("would cost on AWS"),
            "{}",
            plan.render()
        );
    }

    #[test]
    fn a_remote_run_is_refused_without_yes_and_confirmed_with_it() {
        let s = vec![scenario(AWS, 20, 3)];
        let Decision::Refused(plan) = check(&s, None, false, Shard::WHOLE) else {
            panic!("not refused")
        };
        assert_eq!(plan.things, 20);
        assert_eq!(plan.certificates, 60);
        assert_eq!(plan.region.as_deref(), Some("eu-west-1"));
        assert_eq!(plan.account.as_deref(), Some("123456789012"));
        let text = plan.render();
        assert!(
            text.contains("20 things and 60 certificates")
                && text.contains("eu-west-1")
                && text.contains("123456789012")
                && text.contains("abc123-ats.iot.eu-west-1.amazonaws.com:8883"),
            "{text}"
        );
        assert_eq!(
            check(&s, None, true, Shard::WHOLE),
            Decision::Confirmed(plan.clone())
        );
        let confirmed = vec![scenario(&format!("{AWS}\nconfirm_remote = true"), 20, 3)];
        assert_eq!(
            check(&confirmed, None, false, Shard::WHOLE),
            Decision::Confirmed(plan)
        );
        // --endpoint to loopback overrides the remote host; to a remote host, it needs --yes.
        let local = ("127.0.0.1".to_string(), Some(8883));
        assert_eq!(
            check(&s, Some(&local), false, Shard::WHOLE),
            Decision::Local
        );
        let mock = vec![scenario("kind = \"mock\"", 5, 1)];
        assert_eq!(check(&mock, None, false, Shard::WHOLE), Decision::Local);
        let remote = ("iot.example.com".to_string(), None);
        let Decision::Refused(plan) = check(&mock, Some(&remote), false, Shard::WHOLE) else {
            panic!("not refused")
        };
        assert_eq!(plan.endpoints, ["iot.example.com:8883"]);
        assert_eq!((plan.region, plan.account), (None, None));
    }

    #[test]
    fn the_counts_follow_the_schedule_when_it_offers_fewer_devices_than_the_count() {
        let mut written = scenario(AWS, 1000, 2).scenario().clone();
        written.schedule[0].count = Some(30);
        let s = Plan::new(written).unwrap();
        let Decision::Refused(plan) = check(&[s], None, false, Shard::WHOLE) else {
            panic!("not refused")
        };
        assert_eq!((plan.devices, plan.things, plan.certificates), (30, 30, 60));
    }

    #[test]
    fn variants_add_up_and_all_must_confirm() {
        let a = scenario(AWS, 10, 2);
        let b = scenario(&format!("{AWS}\nconfirm_remote = true"), 5, 1);
        let Decision::Refused(plan) = check(&[a.clone(), b.clone()], None, false, Shard::WHOLE)
        else {
            panic!("one variant did not confirm")
        };
        assert_eq!((plan.variants, plan.things, plan.certificates), (2, 15, 25));
        assert!(plan.render().contains("over 2 variants"));
        assert!(matches!(
            check(&[b.clone(), b], None, false, Shard::WHOLE),
            Decision::Confirmed(_)
        ));
    }
}
