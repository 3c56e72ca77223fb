//! The mock as an account across the MQTT and REST sides: RegisterThing with a template naming
//! a thing group or type that does not exist fails (then, once they exist, adds the thing to
//! the group and gives it the type); templates changed over REST survive a `kill -9` and a
//! restart on the same PKI directory; `aws setup` creates the group the seed template names and
//! teardown removes it.

use crate::aws_cli::Cli;
use crate::aws_e2e;
use crate::common;
use crate::support::{self, text};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleetstorm::device::{self, DeviceTls, Endpoint};
use serde_json::json;

/// A settings file with no thing group made at start (a fresh account has none).
fn no_groups(dir: &Path) -> PathBuf {
    let path = dir.join("mock.toml");
    std::fs::write(&path, "thing_groups = []\n").unwrap();
    path
}

/// The seed template with `ThingTypeName` `sensor` and no groups.
fn typed_template(dir: &Path) -> PathBuf {
    let mut t: serde_json::Value =
        serde_json::from_str(fleetstorm::iot::template::SEED_TEMPLATE_JSON).unwrap();
    let props = &mut t["Resources"]["thing"]["Properties"];
    props["ThingTypeName"] = json!("sensor");
    props.as_object_mut().unwrap().remove("ThingGroups");
    let path = dir.join("typed.json");
    std::fs::write(&path, t.to_string()).unwrap();
    path
}

/// Provision device `name` with `template` using the PKI's (preloaded) claim certificate: the
/// thing name, or the failure as text.
fn provision(mock: &support::Mock, template: &str, name: &str) -> Result<String, String> {
    let read = |f: &str| std::fs::read_to_string(mock.pki.join(f)).unwrap();
    let tls = DeviceTls::new(
        &read("root-ca.pem"),
        &read("claim.pem"),
        &read("claim.key"),
        false,
    )
    .unwrap();
    let endpoint = Endpoint {
        host: mock.mqtt.ip().to_string(),
        port: mock.mqtt.port(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime.block_on(device::provision(
        &endpoint,
        &tls,
        &common::seed_device(name, template),
        &device::Handles::default(),
    ));
    report
        .outcome
        .map(|p| p.thing_name)
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn register_thing_needs_the_templates_groups_and_type_and_then_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = no_groups(dir.path());
    let typed = format!("Typed={}", typed_template(dir.path()).display());
    let mock = support::start_mock_with(
        dir.path(),
        &["--config", config.to_str().unwrap(), "--template", &typed],
    );
    let cli = Cli::new(&mock, dir.path());

    // The seed template names fleet-provisioning-group, which this account lacks.
    let failure = provision(&mock, "FleetProvisioningTemplate", "g-1").unwrap_err();
    assert!(
        failure.contains("InvalidParameters")
            && failure.contains("Thing group fleet-provisioning-group does not exist."),
        "{failure}"
    );
    cli.refused(
        &["iot", "describe-thing", "--thing-name", "g-1"],
        "ResourceNotFoundException",
    );
    cli.ok(&[
        "iot",
        "create-thing-group",
        "--thing-group-name",
        "fleet-provisioning-group",
    ]);
    assert_eq!(
        provision(&mock, "FleetProvisioningTemplate", "g-1").unwrap(),
        "g-1"
    );
    let groups = cli.ok(&["iot", "list-thing-groups-for-thing", "--thing-name", "g-1"]);
    assert_eq!(
        groups["thingGroups"][0]["groupName"], "fleet-provisioning-group",
        "{groups}"
    );
    let members = cli.ok(&[
        "iot",
        "list-things-in-thing-group",
        "--thing-group-name",
        "fleet-provisioning-group",
    ]);
    assert_eq!(members["things"], json!(["g-1"]));

    // A template naming a thing type: missing, then deprecated, fails; then it applies.
    let failure = provision(&mock, "Typed", "t-1").unwrap_err();
    assert!(
        failure.contains("InvalidParameters")
            && failure.contains("Thing type sensor does not exist."),
        "{failure}"
    );
    cli.ok(&["iot", "create-thing-type", "--thing-type-name", "sensor"]);
    cli.ok(&["iot", "deprecate-thing-type", "--thing-type-name", "sensor"]);
    let failure = provision(&mock, "Typed", "t-1").unwrap_err();
    assert!(failure.contains("deprecated"), "{failure}");
    cli.ok(&[
        "iot",
        "deprecate-thing-type",
        "--thing-type-name",
        "sensor",
        "--undo-deprecate",
    ]);
    assert_eq!(provision(&mock, "Typed", "t-1").unwrap(), "t-1");
    let thing = cli.ok(&["iot", "describe-thing", "--thing-name", "t-1"]);
    assert_eq!(thing["thingTypeName"], "sensor", "{thing}");
}

/// Wait (bounded) until the PKI directory's journal holds every one of `ops`.
fn wait_journaled(pki: &Path, ops: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(pki.join("registry.log")).unwrap_or_default();
        if ops
            .iter()
            .all(|op| log.contains(&format!("\"op\":\"{op}\"")))
        {
            return;
        }
        assert!(Instant::now() < deadline, "not journaled {ops:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn templates_groups_types_and_policy_versions_changed_over_rest_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/fleet-provisioning-template.json"),
        dir.path().join("template.json"),
    )
    .unwrap();
    let mock = support::start_mock(dir.path());
    let cli = Cli::new(&mock, dir.path());
    cli.ok(&[
        "iot",
        "create-provisioning-template",
        "--template-name",
        "Journaled",
        "--provisioning-role-arn",
        "arn:aws:iam::123456789012:role/R",
        "--template-body",
        "file://template.json",
    ]);
    cli.ok(&[
        "iot",
        "update-provisioning-template",
        "--template-name",
        "Journaled",
        "--description",
        "kept",
        "--enabled",
    ]);
    cli.ok(&[
        "iot",
        "delete-provisioning-template",
        "--template-name",
        "FleetProvisioningTemplate",
    ]);
    cli.ok(&["iot", "create-thing-group", "--thing-group-name", "site"]);
    cli.ok(&["iot", "create-thing-type", "--thing-type-name", "sensor"]);
    cli.ok(&["iot", "create-thing", "--thing-name", "made-over-rest"]);
    cli.ok(&[
        "iot",
        "add-thing-to-thing-group",
        "--thing-group-name",
        "site",
        "--thing-name",
        "made-over-rest",
    ]);
    let doc = crate::aws_policies_certs::policy;
    cli.ok(&[
        "iot",
        "create-policy",
        "--policy-name",
        "p",
        "--policy-document",
        &doc("iot:Connect"),
    ]);
    cli.ok(&[
        "iot",
        "create-policy-version",
        "--policy-name",
        "p",
        "--policy-document",
        &doc("iot:Publish"),
        "--set-as-default",
    ]);
    wait_journaled(
        &mock.pki,
        &[
            "template",
            "drop_template",
            "group",
            "thing_type",
            "policy_versions",
        ],
    );
    drop(cli);
    drop(mock); // SIGKILL: nothing is written at stop.

    let mock = support::start_mock(dir.path());
    assert!(
        mock.ready
            .last()
            .unwrap()
            .starts_with("  templates: Journaled;"),
        "{:?}",
        mock.ready
    );
    let cli = Cli::new(&mock, dir.path());
    let described = cli.ok(&[
        "iot",
        "describe-provisioning-template",
        "--template-name",
        "Journaled",
    ]);
    assert_eq!(described["description"], "kept");
    assert_eq!(described["enabled"], true);
    assert_eq!(
        described["provisioningRoleArn"],
        "arn:aws:iam::123456789012:role/R"
    );
    let body: serde_json::Value =
        serde_json::from_str(described["templateBody"].as_str().unwrap()).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("template.json")).unwrap())
            .unwrap();
    assert_eq!(body, file);
    cli.refused(
        &[
            "iot",
            "describe-provisioning-template",
            "--template-name",
            "FleetProvisioningTemplate",
        ],
        "ResourceNotFoundException",
    );
    cli.ok(&["iot", "describe-thing-group", "--thing-group-name", "site"]);
    cli.ok(&["iot", "describe-thing-type", "--thing-type-name", "sensor"]);
    let groups = cli.ok(&[
        "iot",
        "list-thing-groups-for-thing",
        "--thing-name",
        "made-over-rest",
    ]);
    assert_eq!(groups["thingGroups"][0]["groupName"], "site");
    let policy = cli.ok(&["iot", "get-policy", "--policy-name", "p"]);
    assert_eq!(policy["defaultVersionId"], "2");
    let versions = cli.ok(&["iot", "list-policy-versions", "--policy-name", "p"]);
    assert_eq!(versions["policyVersions"].as_array().unwrap().len(), 2);
    // Deleting over REST after the restart is journaled the same way.
    cli.ok(&[
        "iot",
        "delete-provisioning-template",
        "--template-name",
        "Journaled",
    ]);
    let listed = cli.ok(&["iot", "list-provisioning-templates"]);
    assert_eq!(listed["templates"], json!([]));
}

#[test]
fn aws_setup_creates_the_seed_templates_thing_group_and_teardown_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = no_groups(dir.path());
    let mock = support::start_mock_with(dir.path(), &["--config", config.to_str().unwrap()]);
    let cli = Cli::new(&mock, dir.path());
    let describe = [
        "iot",
        "describe-thing-group",
        "--thing-group-name",
        "fleet-provisioning-group",
    ];
    cli.refused(&describe, "ResourceNotFoundException");
    let setup_dir = dir.path().join("setup");
    let o = aws_e2e::setup(&mock, &setup_dir, "grp");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("created thing group         fleet-provisioning-group"),
        "{}",
        text(&o)
    );
    cli.ok(&describe);
    // The run's devices provision into it.
    let run_dir = dir.path().join("run");
    aws_e2e::run(&mock, &setup_dir.join("scenario.toml"), &run_dir, 3);
    let members = cli.ok(&[
        "iot",
        "list-things-in-thing-group",
        "--thing-group-name",
        "fleet-provisioning-group",
    ]);
    assert_eq!(members["things"].as_array().unwrap().len(), 3, "{members}");
    let again = aws_e2e::setup(&mock, &setup_dir, "grp");
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("reused  thing group         fleet-provisioning-group"),
        "{}",
        text(&again)
    );
    let o = support::fleetstorm(&["aws", "teardown", "--out", setup_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("deleted thing group fleet-provisioning-group"),
        "{}",
        text(&o)
    );
    cli.refused(&describe, "ResourceNotFoundException");

    // A group that existed before setup is reused and kept by teardown.
    cli.ok(&[
        "iot",
        "create-thing-group",
        "--thing-group-name",
        "fleet-provisioning-group",
    ]);
    let kept_dir = dir.path().join("kept");
    let o = aws_e2e::setup(&mock, &kept_dir, "kept");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("reused  thing group"),
        "{}",
        text(&o)
    );
    let o = support::fleetstorm(&["aws", "teardown", "--out", kept_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("thing group"),
        "{}",
        text(&o)
    );
    cli.ok(&describe);
}

/// The default policy version is the one a certificate's connections get: a new default that
/// allows nothing stops the claim certificate from provisioning, the old one set back lets it.
#[test]
fn the_default_policy_version_is_what_devices_connect_with() {
    let dir = tempfile::tempdir().unwrap();
    let mock = support::start_mock(dir.path());
    let cli = Cli::new(&mock, dir.path());
    assert_eq!(
        provision(&mock, "FleetProvisioningTemplate", "v-1").unwrap(),
        "v-1"
    );
    let nothing = crate::aws_policies_certs::policy("iot:Connect").replace(
        "\"Resource\":\"*\"",
        "\"Resource\":\"arn:aws:iot:us-east-1:123456789012:client/nobody\"",
    );
    assert!(nothing.contains("client/nobody"), "{nothing}");
    cli.ok(&[
        "iot",
        "create-policy-version",
        "--policy-name",
        "fleet-provisioning_Policy",
        "--policy-document",
        &nothing,
        "--set-as-default",
    ]);
    let failure = provision(&mock, "FleetProvisioningTemplate", "v-2").unwrap_err();
    assert!(failure.contains("Connect"), "{failure}");
    cli.ok(&[
        "iot",
        "set-default-policy-version",
        "--policy-name",
        "fleet-provisioning_Policy",
        "--policy-version-id",
        "1",
    ]);
    assert_eq!(
        provision(&mock, "FleetProvisioningTemplate", "v-2").unwrap(),
        "v-2"
    );
}
