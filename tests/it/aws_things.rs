//! The AWS CLI against a `fleetstorm mock` process: things created and updated over REST,
//! thing types and thing groups, with AWS's shapes, paging and refusals (botocore's `iot`
//! model; the codes no source gives are marked UNCONFIRMED in the mock and docs/mock.md).

use crate::aws_cli::Cli;
use crate::support;

use serde_json::{Value, json};

/// The names in `listing[key]`, each item's `field` (or the item itself when it is a string).
fn names(listing: &Value, key: &str, field: &str) -> Vec<String> {
    listing[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {listing}"))
        .iter()
        .map(|v| {
            v.as_str()
                .or_else(|| v[field].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn things_are_created_idempotently_and_updated_with_merge_version_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let mock = support::start_mock(dir.path());
    let cli = Cli::new(&mock, dir.path());
    let made = cli.ok(&[
        "iot",
        "create-thing-type",
        "--thing-type-name",
        "sensor",
        "--thing-type-properties",
        "thingTypeDescription=air,searchableAttributes=room",
    ]);
    assert_eq!(
        made["thingTypeArn"],
        "arn:aws:iot:us-east-1:123456789012:thingtype/sensor"
    );
    let attrs = r#"{"attributes":{"a":"1","b":"2"}}"#;
    let create = [
        "iot",
        "create-thing",
        "--thing-name",
        "t1",
        "--thing-type-name",
        "sensor",
        "--attribute-payload",
        attrs,
    ];
    let first = cli.ok(&create);
    assert_eq!(
        first["thingArn"],
        "arn:aws:iot:us-east-1:123456789012:thing/t1"
    );
    // The same name and configuration again: success, the same thing (as AWS documents).
    assert_eq!(cli.ok(&create), first);
    let message = cli.refused(
        &[
            "iot",
            "create-thing",
            "--thing-name",
            "t1",
            "--attribute-payload",
            attrs,
        ],
        "ResourceAlreadyExistsException",
    );
    assert!(message.contains("already exists"), "{message}");
    cli.refused(
        &[
            "iot",
            "create-thing",
            "--thing-name",
            "t2",
            "--thing-type-name",
            "nope",
        ],
        "ResourceNotFoundException",
    );
    cli.refused(
        &["iot", "create-thing", "--thing-name", "bad name"],
        "InvalidRequestException",
    );
    let described = cli.ok(&["iot", "describe-thing", "--thing-name", "t1"]);
    assert_eq!(described["thingTypeName"], "sensor");
    assert_eq!(described["version"], 1);
    assert_eq!(described["thingId"], first["thingId"]);

    // Merge: new attributes join, an empty value removes its attribute; each update raises
    // the version, and a stale expectedVersion is refused.
    let update = |payload: &str| {
        cli.ok(&[
            "iot",
            "update-thing",
            "--thing-name",
            "t1",
            "--attribute-payload",
            payload,
        ])
    };
    update(r#"{"attributes":{"c":"3","a":""},"merge":true}"#);
    let described = cli.ok(&["iot", "describe-thing", "--thing-name", "t1"]);
    assert_eq!(described["attributes"], json!({"b": "2", "c": "3"}));
    assert_eq!(described["version"], 2);
    cli.refused(
        &[
            "iot",
            "update-thing",
            "--thing-name",
            "t1",
            "--expected-version",
            "1",
            "--attribute-payload",
            r#"{"attributes":{"d":"4"}}"#,
        ],
        "VersionConflictException",
    );
    cli.ok(&[
        "iot",
        "update-thing",
        "--thing-name",
        "t1",
        "--expected-version",
        "2",
        "--attribute-payload",
        r#"{"attributes":{"d":"4"}}"#,
    ]);
    let described = cli.ok(&["iot", "describe-thing", "--thing-name", "t1"]);
    assert_eq!(
        described["attributes"],
        json!({"d": "4"}),
        "no merge: replaced"
    );
    assert_eq!(described["version"], 3);
    cli.refused(
        &[
            "iot",
            "update-thing",
            "--thing-name",
            "t1",
            "--thing-type-name",
            "sensor",
            "--remove-thing-type",
        ],
        "InvalidRequestException",
    );
    cli.refused(
        &[
            "iot",
            "update-thing",
            "--thing-name",
            "ghost",
            "--remove-thing-type",
        ],
        "ResourceNotFoundException",
    );
    // DeleteThing checks expectedVersion too.
    cli.ok(&["iot", "create-thing", "--thing-name", "short-lived"]);
    cli.refused(
        &[
            "iot",
            "delete-thing",
            "--thing-name",
            "short-lived",
            "--expected-version",
            "2",
        ],
        "VersionConflictException",
    );
    cli.ok(&[
        "iot",
        "delete-thing",
        "--thing-name",
        "short-lived",
        "--expected-version",
        "1",
    ]);
    let listed = cli.ok(&["iot", "list-things", "--thing-type-name", "sensor"]);
    assert_eq!(names(&listed, "things", "thingName"), ["t1"]);

    // Thing types: describe, list (paged), and the documented delete order.
    for name in ["actuator", "gateway"] {
        cli.ok(&["iot", "create-thing-type", "--thing-type-name", name]);
    }
    cli.refused(
        &["iot", "create-thing-type", "--thing-type-name", "sensor"],
        "ResourceAlreadyExistsException",
    );
    let described = cli.ok(&["iot", "describe-thing-type", "--thing-type-name", "sensor"]);
    assert_eq!(
        described["thingTypeProperties"],
        json!({"thingTypeDescription": "air", "searchableAttributes": ["room"]})
    );
    assert_eq!(described["thingTypeMetadata"]["deprecated"], false);
    assert!(described["thingTypeId"].is_string(), "{described}");
    let all = cli.ok(&["iot", "list-thing-types", "--page-size", "1"]);
    assert_eq!(
        names(&all, "thingTypes", "thingTypeName"),
        ["actuator", "gateway", "sensor"],
        "the CLI follows nextToken one type a page"
    );
    let one = cli.ok(&["iot", "list-thing-types", "--max-items", "1"]);
    assert_eq!(names(&one, "thingTypes", "thingTypeName"), ["actuator"]);
    assert!(one["NextToken"].is_string(), "{one}");
    let only = cli.ok(&["iot", "list-thing-types", "--thing-type-name", "gateway"]);
    assert_eq!(names(&only, "thingTypes", "thingTypeName"), ["gateway"]);
    cli.refused(
        &["iot", "describe-thing-type", "--thing-type-name", "nope"],
        "ResourceNotFoundException",
    );

    let delete_sensor = ["iot", "delete-thing-type", "--thing-type-name", "sensor"];
    let message = cli.refused(&delete_sensor, "InvalidRequestException");
    assert!(message.contains("not deprecated"), "{message}");
    cli.ok(&["iot", "deprecate-thing-type", "--thing-type-name", "sensor"]);
    let described = cli.ok(&["iot", "describe-thing-type", "--thing-type-name", "sensor"]);
    assert_eq!(described["thingTypeMetadata"]["deprecated"], true);
    assert!(described["thingTypeMetadata"]["deprecationDate"].is_number());
    let message = cli.refused(
        &[
            "iot",
            "create-thing",
            "--thing-name",
            "t3",
            "--thing-type-name",
            "sensor",
        ],
        "InvalidRequestException",
    );
    assert!(message.contains("deprecated"), "{message}");
    let message = cli.refused(&delete_sensor, "InvalidRequestException");
    assert!(message.contains("things are still associated"), "{message}");
    cli.ok(&[
        "iot",
        "update-thing",
        "--thing-name",
        "t1",
        "--remove-thing-type",
    ]);
    cli.ok(&delete_sensor);
    cli.refused(&delete_sensor, "ResourceNotFoundException");
    cli.refused(
        &[
            "iot",
            "deprecate-thing-type",
            "--thing-type-name",
            "sensor",
            "--undo-deprecate",
        ],
        "ResourceNotFoundException",
    );
    cli.ok(&[
        "iot",
        "deprecate-thing-type",
        "--thing-type-name",
        "gateway",
    ]);
    cli.ok(&[
        "iot",
        "deprecate-thing-type",
        "--thing-type-name",
        "gateway",
        "--undo-deprecate",
    ]);
    let described = cli.ok(&["iot", "describe-thing-type", "--thing-type-name", "gateway"]);
    assert_eq!(described["thingTypeMetadata"]["deprecated"], false);
}

#[test]
fn thing_groups_hold_things_page_nest_and_delete_as_on_aws() {
    let dir = tempfile::tempdir().unwrap();
    let mock = support::start_mock(dir.path());
    let cli = Cli::new(&mock, dir.path());
    let create = [
        "iot",
        "create-thing-group",
        "--thing-group-name",
        "site",
        "--thing-group-properties",
        r#"{"thingGroupDescription":"Berlin","attributePayload":{"attributes":{"floor":"3"}}}"#,
    ];
    let made = cli.ok(&create);
    assert_eq!(
        made["thingGroupArn"],
        "arn:aws:iot:us-east-1:123456789012:thinggroup/site"
    );
    // Identical input again answers the same group; other properties collide.
    assert_eq!(cli.ok(&create), made);
    let message = cli.refused(
        &[
            "iot",
            "create-thing-group",
            "--thing-group-name",
            "site",
            "--thing-group-properties",
            "thingGroupDescription=Seattle",
        ],
        "ResourceAlreadyExistsException",
    );
    assert!(message.contains("different properties"), "{message}");
    cli.ok(&[
        "iot",
        "create-thing-group",
        "--thing-group-name",
        "room",
        "--parent-group-name",
        "site",
    ]);
    cli.refused(
        &[
            "iot",
            "create-thing-group",
            "--thing-group-name",
            "orphan",
            "--parent-group-name",
            "nowhere",
        ],
        "InvalidRequestException",
    );
    let room = cli.ok(&["iot", "describe-thing-group", "--thing-group-name", "room"]);
    assert_eq!(room["thingGroupMetadata"]["parentGroupName"], "site");
    assert_eq!(
        room["thingGroupMetadata"]["rootToParentThingGroups"],
        json!([{"groupName": "site", "groupArn": made["thingGroupArn"]}])
    );
    let site = cli.ok(&["iot", "describe-thing-group", "--thing-group-name", "site"]);
    assert_eq!(
        site["thingGroupProperties"]["attributePayload"]["attributes"],
        json!({"floor": "3"})
    );
    assert_eq!(site["version"], 1);
    cli.refused(
        &["iot", "describe-thing-group", "--thing-group-name", "nope"],
        "ResourceNotFoundException",
    );

    // Listings: every group (the mock's fleet-provisioning-group too), by parent, by prefix, paged.
    let all = cli.ok(&["iot", "list-thing-groups", "--page-size", "1"]);
    assert_eq!(
        names(&all, "thingGroups", "groupName"),
        ["fleet-provisioning-group", "room", "site"]
    );
    let children = cli.ok(&["iot", "list-thing-groups", "--parent-group", "site"]);
    assert_eq!(names(&children, "thingGroups", "groupName"), ["room"]);
    let prefixed = cli.ok(&["iot", "list-thing-groups", "--name-prefix-filter", "s"]);
    assert_eq!(names(&prefixed, "thingGroups", "groupName"), ["site"]);
    let one = cli.ok(&["iot", "list-thing-groups", "--max-items", "1"]);
    assert!(one["NextToken"].is_string(), "{one}");
    cli.refused(
        &["iot", "list-thing-groups", "--parent-group", "nope"],
        "ResourceNotFoundException",
    );

    // Membership.
    for thing in ["d1", "d2", "d3"] {
        cli.ok(&["iot", "create-thing", "--thing-name", thing]);
    }
    let add = |group: &str, thing: &str| {
        cli.ok(&[
            "iot",
            "add-thing-to-thing-group",
            "--thing-group-name",
            group,
            "--thing-name",
            thing,
        ])
    };
    add("site", "d1");
    add("site", "d2");
    add("room", "d3");
    // By ARN too.
    cli.ok(&[
        "iot",
        "add-thing-to-thing-group",
        "--thing-group-arn",
        made["thingGroupArn"].as_str().unwrap(),
        "--thing-arn",
        "arn:aws:iot:us-east-1:123456789012:thing/d3",
    ]);
    cli.refused(
        &[
            "iot",
            "add-thing-to-thing-group",
            "--thing-group-name",
            "nope",
            "--thing-name",
            "d1",
        ],
        "ResourceNotFoundException",
    );
    cli.refused(
        &[
            "iot",
            "add-thing-to-thing-group",
            "--thing-group-name",
            "site",
            "--thing-name",
            "ghost",
        ],
        "ResourceNotFoundException",
    );
    let in_site = [
        "iot",
        "list-things-in-thing-group",
        "--thing-group-name",
        "site",
    ];
    let paged: Vec<&str> = in_site
        .iter()
        .copied()
        .chain(["--page-size", "1"])
        .collect();
    assert_eq!(names(&cli.ok(&paged), "things", ""), ["d1", "d2", "d3"]);
    let first: Vec<&str> = in_site
        .iter()
        .copied()
        .chain(["--max-items", "2"])
        .collect();
    let first = cli.ok(&first);
    assert_eq!(names(&first, "things", ""), ["d1", "d2"]);
    assert!(first["NextToken"].is_string(), "{first}");
    let in_room = cli.ok(&[
        "iot",
        "list-things-in-thing-group",
        "--thing-group-name",
        "room",
    ]);
    assert_eq!(names(&in_room, "things", ""), ["d3"]);
    cli.refused(
        &[
            "iot",
            "list-things-in-thing-group",
            "--thing-group-name",
            "nope",
        ],
        "ResourceNotFoundException",
    );
    let of_d3 = cli.ok(&["iot", "list-thing-groups-for-thing", "--thing-name", "d3"]);
    assert_eq!(names(&of_d3, "thingGroups", "groupName"), ["room", "site"]);
    cli.refused(
        &[
            "iot",
            "list-thing-groups-for-thing",
            "--thing-name",
            "ghost",
        ],
        "ResourceNotFoundException",
    );
    cli.ok(&[
        "iot",
        "remove-thing-from-thing-group",
        "--thing-group-name",
        "site",
        "--thing-name",
        "d3",
    ]);
    let of_d3 = cli.ok(&["iot", "list-thing-groups-for-thing", "--thing-name", "d3"]);
    assert_eq!(names(&of_d3, "thingGroups", "groupName"), ["room"]);
    cli.refused(
        &[
            "iot",
            "remove-thing-from-thing-group",
            "--thing-group-name",
            "nope",
            "--thing-name",
            "d3",
        ],
        "ResourceNotFoundException",
    );

    // Deletes: not while a child group exists; a stale expectedVersion conflicts; a missing
    // group is deleted already; the group's things leave it.
    let delete_site = ["iot", "delete-thing-group", "--thing-group-name", "site"];
    let message = cli.refused(&delete_site, "InvalidRequestException");
    assert!(message.contains("child groups"), "{message}");
    cli.refused(
        &[
            "iot",
            "delete-thing-group",
            "--thing-group-name",
            "room",
            "--expected-version",
            "7",
        ],
        "VersionConflictException",
    );
    cli.ok(&["iot", "delete-thing-group", "--thing-group-name", "room"]);
    cli.ok(&delete_site);
    cli.ok(&delete_site);
    cli.refused(
        &["iot", "describe-thing-group", "--thing-group-name", "site"],
        "ResourceNotFoundException",
    );
    let of_d1 = cli.ok(&["iot", "list-thing-groups-for-thing", "--thing-name", "d1"]);
    assert_eq!(of_d1["thingGroups"], json!([]));
}
