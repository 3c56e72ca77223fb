use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use super::*;
use crate::iot::template::{RenderContext, SEED_TEMPLATE_JSON, Template};
use crate::mock::registry::{IdentityRefusal, TokenError};

const HOUR: Duration = Duration::from_secs(3600);

/// Provision `cert` as thing `name` through the seed template, as RegisterThing does.
fn provision(r: &Registry, cert: &str, name: &str) {
    // The seed template's group, as the mock's settings make it.
    r.add_thing_group("fleet-provisioning-group");
    let token = format!("token-{cert}");
    r.add_pending_certificate(cert, "PEM", "claim", &token, HOUR);
    let parameters: BTreeMap<String, String> = [
        ("DeviceName".to_string(), name.to_string()),
        ("SerialNumber".to_string(), "42".to_string()),
        ("DeviceLocation".to_string(), "Berlin".to_string()),
    ]
    .into();
    let rendered = Template::parse(SEED_TEMPLATE_JSON)
        .unwrap()
        .render(&RenderContext {
            parameters: &parameters,
            certificate_id: cert,
        })
        .unwrap();
    r.apply(&token, &rendered).unwrap();
}

fn log_text(dir: &Path) -> String {
    fs::read_to_string(dir.join(LOG_FILE)).unwrap()
}

#[test]
fn a_reopened_registry_has_every_certificate_thing_token_and_control_change() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    provision(&r, "c1", "dev-1");
    provision(&r, "c2", "dev-2");
    r.add_pending_certificate("c3", "PEM3", "claim", "tok3", HOUR);
    r.update_certificate_status("c2", CertificateStatus::Inactive)
        .unwrap();
    r.close_journal();
    drop(r);

    let again = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    let id = again.identity("c1").ok().unwrap();
    assert_eq!(id.thing_name.as_deref(), Some("dev-1"));
    assert_eq!(
        id.policies.len(),
        1,
        "the template's policy comes back with it"
    );
    assert!(matches!(
        again.identity("c2"),
        Err(IdentityRefusal::NotActive(CertificateStatus::Inactive))
    ));
    let thing = again.thing("dev-1").unwrap();
    assert_eq!(thing.attributes["serialNumber"], "42");
    assert!(thing.certificates.contains("c1"));
    assert_eq!(again.certificate_pem("c1").as_deref(), Some("PEM"));
    // The pending certificate can still be registered with its token.
    assert_eq!(again.check_token("tok3"), Ok("c3".to_string()));
    assert_eq!(again.counts().things, 2);
    again.close_journal();
    // Rewritten as a snapshot: one line per record, not the history.
    let text = log_text(dir.path());
    assert_eq!(text.matches("\"c1\"").count(), 2, "{text}"); // the cert and its thing
}

#[test]
fn a_compact_registry_keeps_what_a_connection_needs_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(dir.path(), RegistryMode::Compact).unwrap();
    provision(&r, "c1", "dev-1");
    // The pre-provisioning hook still sees the PEM of a pending certificate.
    r.add_pending_certificate("c2", "PEM2", "claim", "tok2", HOUR);
    assert_eq!(r.certificate_pem("c2").as_deref(), Some("PEM2"));
    // Registering the same thing again is not refused for attributes it did not keep.
    provision(&r, "c3", "dev-1");
    r.close_journal();
    drop(r);

    let again = Registry::open(dir.path(), RegistryMode::Compact).unwrap();
    for cert in ["c1", "c3"] {
        let id = again.identity(cert).ok().unwrap();
        assert_eq!(id.thing_name.as_deref(), Some("dev-1"));
        assert_eq!(id.policies.len(), 1);
    }
    let thing = again.thing("dev-1").unwrap();
    assert!(thing.attributes.is_empty() && thing.thing_groups.is_empty());
    assert_eq!(thing.certificates.len(), 2);
    let cert = again.certificate("c1").unwrap();
    assert!(cert.certificate_pem.is_empty() && cert.created_by.is_none());
    assert!(!log_text(dir.path()).contains("serialNumber"));
}

#[test]
fn a_cut_short_last_line_is_skipped_and_other_damage_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    provision(&r, "c1", "dev-1");
    r.close_journal();
    drop(r);
    let path = dir.path().join(LOG_FILE);
    let whole = fs::read_to_string(&path).unwrap();
    // kill -9 in the middle of a write.
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"op":"cert","certificate_id":"c9","sta"#)
        .unwrap();
    drop(file);
    let again = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    assert!(again.identity("c1").is_ok());
    assert!(again.certificate("c9").is_none());
    again.close_journal();
    drop(again);

    let lines = whole.lines().count();
    fs::write(&path, format!("{{\"op\":\"nonsense\"}}\n{whole}")).unwrap();
    let err = Registry::open(dir.path(), RegistryMode::Full)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("{}:1:", path.display())), "{err}");
    assert!(lines >= 2, "the damaged line is not the last");
}

#[test]
fn a_blank_line_in_the_middle_is_damage_named_by_line_and_a_blank_last_line_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    provision(&r, "c1", "dev-1");
    r.close_journal();
    drop(r);
    let path = dir.path().join(LOG_FILE);
    let whole = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = whole.lines().collect();
    assert!(lines.len() >= 2, "{whole}");

    // A whitespace-only last line (with its newline) replays as before.
    fs::write(&path, format!("{whole} \n")).unwrap();
    let again = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    assert!(again.identity("c1").is_ok());
    again.close_journal();
    drop(again);

    // Line 2 blanked out: the start stops there, naming it.
    let mut damaged = lines.clone();
    damaged.insert(1, "");
    fs::write(&path, damaged.join("\n") + "\n").unwrap();
    let err = Registry::open(dir.path(), RegistryMode::Full)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("{}:2: ", path.display())) && err.contains("blank line"),
        "{err}"
    );
}

#[test]
fn changes_reach_the_file_within_a_flush_interval_without_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(dir.path(), RegistryMode::Compact).unwrap();
    provision(&r, "c1", "dev-1");
    let deadline = Instant::now() + FLUSH_INTERVAL * 8;
    while !log_text(dir.path()).contains("\"dev-1\"") {
        assert!(Instant::now() < deadline, "not written out in time");
        std::thread::sleep(FLUSH_INTERVAL / 5);
    }
}

#[test]
fn a_pending_certificate_whose_token_expired_while_down_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    r.add_pending_certificate("c1", "PEM", "claim", "tok", Duration::ZERO);
    r.add_pending_certificate("c2", "PEM", "claim", "tok2", HOUR);
    r.close_journal();
    drop(r);
    let again = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    assert!(again.certificate("c1").is_none());
    assert_eq!(again.check_token("tok"), Err(TokenError::Unknown));
    assert_eq!(again.counts().pending_certificates, 1);
}

#[test]
fn deletions_are_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    provision(&r, "c1", "dev-1");
    r.detach_thing_principal("dev-1", "c1").unwrap();
    r.delete_thing("dev-1", None).unwrap();
    r.update_certificate_status("c1", CertificateStatus::Inactive)
        .unwrap();
    r.delete_certificate("c1", true, "arn").unwrap();
    r.close_journal();
    drop(r);
    let again = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    assert!(again.thing("dev-1").is_none());
    assert!(again.certificate("c1").is_none());
}

#[test]
fn groups_types_policy_versions_and_templates_come_back_from_the_log_and_its_snapshot() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    // A group line as earlier builds wrote it: a name only.
    fs::write(
        dir.path().join(LOG_FILE),
        "{\"op\":\"group\",\"name\":\"old\"}\n",
    )
    .unwrap();
    let r = Registry::open(dir.path(), RegistryMode::Full).unwrap();
    r.create_thing_group("g", None, json!({"thingGroupDescription": "d"}))
        .unwrap();
    r.create_thing_group("child", Some("g"), json!({})).unwrap();
    r.create_thing_type("t", json!({})).unwrap();
    r.deprecate_thing_type("t", false).unwrap();
    r.create_thing("x", None, BTreeMap::new(), None).unwrap();
    r.thing_group_member("child", "x", true).unwrap();
    let v1 = json!({"Version": "2012-10-17", "Statement": []});
    r.create_policy("p", PolicyDocument::parse(&v1).unwrap(), v1.clone())
        .unwrap();
    let v2 = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]});
    r.create_policy_version("p", v2.clone(), true).unwrap();
    r.journal_template("a", Some(&json!({"body": "{}"})));
    r.journal_template("b", None);
    r.close_journal();
    drop(r);
    // Twice: once replaying the log, once replaying the snapshot the first open wrote.
    for _ in 0..2 {
        let again = Registry::open(dir.path(), RegistryMode::Full).unwrap();
        assert!(again.thing_group("old").is_ok());
        let (group, ancestors) = again.thing_group("child").unwrap();
        assert_eq!(
            (group.parent.as_deref(), ancestors),
            (Some("g"), vec!["g".to_string()])
        );
        assert_eq!(
            again.thing_group("g").unwrap().0.properties,
            json!({"thingGroupDescription": "d"})
        );
        assert!(again.thing_type("t").unwrap().deprecated.is_some());
        assert_eq!(
            again.groups_of_thing("x", None, 10).unwrap().items,
            ["child"]
        );
        assert_eq!(
            again.policy_json("p"),
            Some(v2.clone()),
            "the default version"
        );
        let versions = again.policy_versions("p").unwrap();
        assert_eq!((versions.default, versions.versions.len()), (2, 2));
        assert_eq!(
            again.journaled_templates(),
            vec![
                ("a".to_string(), Some(json!({"body": "{}"}))),
                ("b".to_string(), None)
            ]
        );
        again.close_journal();
    }
}

#[test]
fn register_thing_refuses_a_missing_group_or_type_and_changes_nothing() {
    let r = Registry::default();
    r.add_pending_certificate("c1", "PEM", "claim", "tok", HOUR);
    let parameters: BTreeMap<String, String> = [
        ("DeviceName".to_string(), "d".to_string()),
        ("SerialNumber".to_string(), "1".to_string()),
        ("DeviceLocation".to_string(), "Berlin".to_string()),
    ]
    .into();
    let mut rendered = Template::parse(SEED_TEMPLATE_JSON)
        .unwrap()
        .render(&RenderContext {
            parameters: &parameters,
            certificate_id: "c1",
        })
        .unwrap();
    let err = r.apply("tok", &rendered).unwrap_err();
    assert_eq!(
        (err.status, err.code, err.message.as_str()),
        (
            400,
            "InvalidParameters",
            "Thing group fleet-provisioning-group does not exist."
        )
    );
    assert!(r.thing("d").is_none());
    assert_eq!(
        r.check_token("tok"),
        Ok("c1".to_string()),
        "the token is kept"
    );
    r.add_thing_group("fleet-provisioning-group");
    if let Some(thing) = rendered.thing.as_mut() {
        thing.thing_type_name = Some("sensor".into());
    }
    let err = r.apply("tok", &rendered).unwrap_err();
    assert_eq!(err.message, "Thing type sensor does not exist.");
    r.create_thing_type("sensor", serde_json::json!({}))
        .unwrap();
    r.apply("tok", &rendered).unwrap();
    let thing = r.thing("d").unwrap();
    assert_eq!(thing.thing_type_name.as_deref(), Some("sensor"));
    assert!(thing.thing_groups.contains("fleet-provisioning-group"));
}
