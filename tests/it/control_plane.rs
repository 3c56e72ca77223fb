//! The mock's AWS IoT control plane over plain HTTP: shapes, errors, pagination, and a template,
//! claim certificate and policy created over REST that a device then provisions with over MQTT.

use crate::common;

use bytes::Bytes;
use common::{TestMock, start_mock};
use fleetstorm::device::{self, DeviceTls, FailureReason};
use fleetstorm::mock::registry::CertificateStatus;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const TEMPLATE: &str = include_str!("../aws/fleet-provisioning-template.json");
const POLICY: &str = include_str!("../aws/fleet-provisioning-policy.json");

/// A bare restJson1 client for the control plane.
struct Api {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Status, error type (before the colon of `x-amzn-ErrorType`), JSON body (`Null` when empty).
struct Answer {
    status: u16,
    error: Option<String>,
    body: Value,
    headers: hyper::HeaderMap,
}

impl Answer {
    #[track_caller]
    fn ok(self) -> Value {
        assert_eq!(self.status, 200, "{:?} {}", self.error, self.body);
        self.body
    }

    #[track_caller]
    fn err(self, status: u16, code: &str) -> String {
        assert_eq!(
            (self.status, self.error.as_deref()),
            (status, Some(code)),
            "{}",
            self.body
        );
        self.body["message"]
            .as_str()
            .expect("error body has a message")
            .to_string()
    }
}

impl Api {
    fn new(m: &TestMock) -> Api {
        let addr = m.handle.control_addr.expect("control plane served");
        Api {
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            // Any signature passes: the mock does not check SigV4.
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=00");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(bytes))).unwrap())
            .await
            .expect("control plane answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let error = headers
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or_default().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).expect("JSON body")
        };
        Answer {
            status,
            error,
            body,
            headers,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call(method, path, &[], body).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }
}

fn encode(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

#[tokio::test]
async fn certificates_policies_and_templates_answer_with_aws_shapes_and_errors() {
    let m = start_mock(|_| {}).await;
    let api = Api::new(&m);

    let endpoint = api.get("/endpoint?endpointType=iot%3AData-ATS").await;
    assert_eq!(
        endpoint.headers["x-fleetstorm-mqtt-port"].to_str().unwrap(),
        m.handle.addr.port().to_string()
    );
    assert_eq!(endpoint.ok()["endpointAddress"], "127.0.0.1");
    api.get("/endpoint?endpointType=iot%3ANope")
        .await
        .err(400, "InvalidRequestException");

    // The built-in seed template is listed, enabled, with its body.
    let listed = api.get("/provisioning-templates").await.ok();
    assert_eq!(
        listed["templates"][0]["templateName"],
        "FleetProvisioningTemplate"
    );
    assert_eq!(listed["templates"][0]["enabled"], true);
    let described = api
        .get("/provisioning-templates/FleetProvisioningTemplate")
        .await
        .ok();
    assert_eq!(
        described["templateArn"],
        "arn:aws:iot:us-east-1:123456789012:provisioningtemplate/FleetProvisioningTemplate"
    );
    assert!(
        described["templateBody"]
            .as_str()
            .unwrap()
            .contains("LocationTable")
    );
    let message = api
        .get("/provisioning-templates/NoSuchTemplate")
        .await
        .err(404, "ResourceNotFoundException");
    assert!(message.contains("NoSuchTemplate"), "{message}");

    // CreateKeysAndCertificate: an ACTIVE certificate signed by the mock's CA, key returned.
    let created = api
        .send("POST", "/keys-and-certificate?setAsActive=true", None)
        .await
        .ok();
    let id = created["certificateId"].as_str().unwrap().to_string();
    let arn = created["certificateArn"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(arn, format!("arn:aws:iot:us-east-1:123456789012:cert/{id}"));
    assert!(
        created["keyPair"]["PrivateKey"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN")
    );
    assert!(
        created["keyPair"]["PublicKey"]
            .as_str()
            .unwrap()
            .contains("PUBLIC KEY")
    );
    let cert = api.get(&format!("/certificates/{id}")).await.ok();
    let description = &cert["certificateDescription"];
    assert_eq!(description["status"], "ACTIVE");
    assert_eq!(description["certificatePem"], created["certificatePem"]);
    assert!(description["creationDate"].as_f64().unwrap() > 1.6e9);
    assert_eq!(
        m.handle.registry().certificate(&id).unwrap().status,
        CertificateStatus::Active
    );

    // Policies: create, conflict, attach, list both ways, delete refused while attached.
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]});
    let body = json!({ "policyDocument": doc.to_string() });
    let policy = api
        .send("POST", "/policies/all-of-it", Some(body.clone()))
        .await
        .ok();
    assert_eq!(
        policy["policyArn"],
        "arn:aws:iot:us-east-1:123456789012:policy/all-of-it"
    );
    assert_eq!(policy["policyVersionId"], "1");
    let again = api.send("POST", "/policies/all-of-it", Some(body)).await;
    assert_eq!(again.body["resourceId"], "all-of-it");
    again.err(409, "ResourceAlreadyExistsException");
    api.send(
        "POST",
        "/policies/broken",
        Some(json!({"policyDocument": "{not json"})),
    )
    .await
    .err(400, "MalformedPolicyException");
    let got = api.get("/policies/all-of-it").await.ok();
    let parsed: Value = serde_json::from_str(got["policyDocument"].as_str().unwrap()).unwrap();
    assert_eq!(parsed, doc);

    let target = json!({ "target": arn });
    assert_eq!(
        api.send("PUT", "/target-policies/all-of-it", Some(target.clone()))
            .await
            .ok(),
        Value::Null
    );
    let attached = api
        .send(
            "POST",
            &format!("/attached-policies/{}", encode(&arn)),
            None,
        )
        .await
        .ok();
    assert_eq!(
        attached["policies"],
        json!([{"policyName": "all-of-it", "policyArn": "arn:aws:iot:us-east-1:123456789012:policy/all-of-it"}])
    );
    // botocore leaves the ARN's `/` unescaped in the path; that works too.
    let attached = api
        .send(
            "POST",
            &format!("/attached-policies/{}", arn.replace(':', "%3A")),
            None,
        )
        .await
        .ok();
    assert_eq!(attached["policies"][0]["policyName"], "all-of-it");
    let targets = api
        .send("POST", "/policy-targets/all-of-it", None)
        .await
        .ok();
    assert_eq!(targets["targets"], json!([arn]));
    let message = api
        .send("DELETE", "/policies/all-of-it", None)
        .await
        .err(409, "DeleteConflictException");
    assert!(message.contains("attached"), "{message}");

    // Certificates: ACTIVE cannot be deleted; INACTIVE with a policy needs forceDelete.
    api.send("DELETE", &format!("/certificates/{id}"), None)
        .await
        .err(406, "CertificateStateException");
    api.send(
        "PUT",
        &format!("/certificates/{id}?newStatus=INACTIVE"),
        None,
    )
    .await
    .ok();
    api.send("DELETE", &format!("/certificates/{id}"), None)
        .await
        .err(409, "DeleteConflictException");
    api.send(
        "DELETE",
        &format!("/certificates/{id}?forceDelete=true"),
        None,
    )
    .await
    .ok();
    api.get(&format!("/certificates/{id}"))
        .await
        .err(404, "ResourceNotFoundException");
    assert!(m.handle.registry().certificate(&id).is_none());
    api.send("DELETE", "/policies/all-of-it", None).await.ok();
    api.get("/policies/all-of-it")
        .await
        .err(404, "ResourceNotFoundException");

    // Bad input is InvalidRequestException, unknown routes UnknownOperationException.
    api.get("/certificates/not-an-id")
        .await
        .err(400, "InvalidRequestException");
    api.send(
        "PUT",
        &format!("/certificates/{}?newStatus=SIDEWAYS", "a".repeat(64)),
        None,
    )
    .await
    .err(400, "InvalidRequestException");
    api.send(
        "POST",
        "/provisioning-templates",
        Some(
            json!({"templateName": "bad name!", "templateBody": "{}", "provisioningRoleArn": "r"}),
        ),
    )
    .await
    .err(400, "InvalidRequestException");
    api.send("POST", "/provisioning-templates", Some(json!({"templateName": "Broken", "templateBody": "{\"Resources\": 3}", "provisioningRoleArn": "r"})))
        .await
        .err(400, "InvalidRequestException");
    api.get("/no/such/operation")
        .await
        .err(404, "UnknownOperationException");
}

#[tokio::test]
async fn listings_page_with_markers_and_next_tokens() {
    let m = start_mock(|_| {}).await;
    let api = Api::new(&m);
    for _ in 0..6 {
        api.send("POST", "/keys-and-certificate", None).await.ok();
    }
    // Seven certificates with the built-in claim certificate, newest first, three a page.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &marker {
            Some(m) => format!("/certificates?pageSize=3&marker={m}"),
            None => "/certificates?pageSize=3".to_string(),
        };
        let page = api.get(&path).await.ok();
        pages += 1;
        for c in page["certificates"].as_array().unwrap() {
            assert_eq!(c["certificateMode"], "DEFAULT");
            seen.push((
                c["creationDate"].as_f64().unwrap(),
                c["certificateId"].as_str().unwrap().to_string(),
            ));
        }
        match page["nextMarker"].as_str() {
            Some(m) => marker = Some(m.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    let mut ids: Vec<_> = seen.iter().map(|s| s.1.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "no certificate listed twice");
    assert!(
        seen.windows(2).all(|w| w[0].0 >= w[1].0),
        "newest first: {seen:?}"
    );
    let ascending = api
        .get("/certificates?isAscendingOrder=true&pageSize=250")
        .await
        .ok();
    let first = &ascending["certificates"][0]["certificateId"];
    assert_eq!(first.as_str(), Some(seen.last().unwrap().1.as_str()));
    api.get("/certificates?pageSize=0")
        .await
        .err(400, "InvalidRequestException");
    api.get("/certificates?marker=zz")
        .await
        .err(400, "InvalidRequestException");

    // Templates created over REST are listed after the built-in one, one a page.
    for name in ["A1", "B2"] {
        let body = json!({"templateName": name, "templateBody": TEMPLATE, "provisioningRoleArn": "arn:aws:iam::123456789012:role/x"});
        api.send("POST", "/provisioning-templates", Some(body))
            .await
            .ok();
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/provisioning-templates?maxResults=1&nextToken={t}"),
            None => "/provisioning-templates?maxResults=1".into(),
        };
        let page = api.get(&path).await.ok();
        names.extend(
            page["templates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["templateName"].as_str().unwrap().to_string()),
        );
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(names, ["A1", "B2", "FleetProvisioningTemplate"]);
}

#[tokio::test]
async fn a_device_provisions_with_the_template_claim_certificate_and_policy_created_over_rest() {
    let m = start_mock(|_| {}).await;
    let api = Api::new(&m);
    let template = "RestTemplate";
    let role = "arn:aws:iam::123456789012:role/provisioning";
    let body =
        json!({"templateName": template, "templateBody": TEMPLATE, "provisioningRoleArn": role});
    let created = api
        .send("POST", "/provisioning-templates", Some(body.clone()))
        .await
        .ok();
    assert_eq!(created["templateName"], template);
    api.send("POST", "/provisioning-templates", Some(body))
        .await
        .err(409, "ResourceAlreadyExistsException");
    let claim = api
        .send("POST", "/keys-and-certificate?setAsActive=true", None)
        .await
        .ok();
    let claim_arn = claim["certificateArn"].as_str().unwrap().to_string();
    let tls = DeviceTls::new(
        &m.handle.pki.root_ca_pem,
        claim["certificatePem"].as_str().unwrap(),
        claim["keyPair"]["PrivateKey"].as_str().unwrap(),
        false,
    )
    .unwrap();

    // No policy attached yet: the new claim certificate may not even connect.
    let refused = device::provision(
        &m.endpoint,
        &tls,
        &common::seed_device("early", template),
        &device::Handles::default(),
    )
    .await;
    let label = refused
        .outcome
        .expect_err("connected without a policy")
        .reason
        .label();
    assert!(label.starts_with("connack_refused"), "{label}");

    let policy = POLICY.replace("FleetProvisioningTemplate", template);
    api.send(
        "POST",
        "/policies/rest-claim",
        Some(json!({"policyDocument": policy})),
    )
    .await
    .ok();
    api.send(
        "PUT",
        "/target-policies/rest-claim",
        Some(json!({"target": claim_arn})),
    )
    .await
    .ok();

    // Created disabled (AWS's default): RegisterThing is refused until it is enabled.
    let disabled = device::provision(
        &m.endpoint,
        &tls,
        &common::seed_device("too-soon", template),
        &device::Handles::default(),
    )
    .await;
    let failure = disabled
        .outcome
        .expect_err("provisioned with a disabled template");
    assert!(
        matches!(&failure.reason, FailureReason::Rejected(_, 400, code) if code == "InvalidRequestException"),
        "{failure:?}"
    );
    assert!(m.handle.registry().thing("too-soon").is_none());
    api.send(
        "PATCH",
        &format!("/provisioning-templates/{template}"),
        Some(json!({"enabled": true})),
    )
    .await
    .ok();
    assert_eq!(
        api.get(&format!("/provisioning-templates/{template}"))
            .await
            .ok()["enabled"],
        true
    );

    let report = device::provision(
        &m.endpoint,
        &tls,
        &common::seed_device("rest-device", template),
        &device::Handles::default(),
    )
    .await;
    let provisioned = report
        .outcome
        .expect("provisioned with the REST-made claim");
    assert_eq!(provisioned.thing_name, "rest-device");

    // What the device registered over MQTT is what the control plane lists.
    let things = api.get("/things").await.ok();
    let names: Vec<&str> = things["things"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thingName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"rest-device"), "{things}");
    let thing = api.get("/things/rest-device").await.ok();
    assert_eq!(thing["attributes"]["serialNumber"], "123456");
    assert_eq!(
        thing["thingArn"],
        "arn:aws:iot:us-east-1:123456789012:thing/rest-device"
    );
    let filtered = api
        .get("/things?attributeName=serialNumber&attributeValue=123456")
        .await
        .ok();
    assert_eq!(filtered["things"].as_array().unwrap().len(), 1);
    let principals = api.get("/things/rest-device/principals").await.ok();
    let device_arn = format!(
        "arn:aws:iot:us-east-1:123456789012:cert/{}",
        provisioned.certificate_id
    );
    assert_eq!(principals["principals"], json!([device_arn]));

    // Cleanup as `aws cleanup` does it, with AWS's refusals on the way.
    let message = api
        .send("DELETE", "/things/rest-device", None)
        .await
        .err(400, "InvalidRequestException");
    assert!(message.contains("still attached"), "{message}");
    let attached = api
        .send(
            "POST",
            &format!("/attached-policies/{}", encode(&device_arn)),
            None,
        )
        .await
        .ok();
    for p in attached["policies"].as_array().unwrap() {
        let name = p["policyName"].as_str().unwrap();
        api.send(
            "POST",
            &format!("/target-policies/{name}"),
            Some(json!({"target": device_arn})),
        )
        .await
        .ok();
    }
    let principal = [("x-amzn-principal", device_arn.as_str())];
    api.call("DELETE", "/things/rest-device/principals", &principal, None)
        .await
        .ok();
    api.send(
        "PUT",
        &format!(
            "/certificates/{}?newStatus=INACTIVE",
            provisioned.certificate_id
        ),
        None,
    )
    .await
    .ok();
    api.send(
        "DELETE",
        &format!("/certificates/{}", provisioned.certificate_id),
        None,
    )
    .await
    .ok();
    api.send("DELETE", "/things/rest-device", None).await.ok();
    // Deleting what is gone is not an error (as AWS documents DeleteThing).
    api.send("DELETE", "/things/rest-device", None).await.ok();
    api.get("/things/rest-device")
        .await
        .err(404, "ResourceNotFoundException");
    assert!(m.handle.registry().thing("rest-device").is_none());
    assert!(
        m.handle
            .registry()
            .certificate(&provisioned.certificate_id)
            .is_none()
    );

    // A template deleted over REST is no longer one devices can use.
    api.send(
        "DELETE",
        &format!("/provisioning-templates/{template}"),
        None,
    )
    .await
    .ok();
    let gone = device::provision(
        &m.endpoint,
        &tls,
        &common::seed_device("after", template),
        &device::Handles::default(),
    )
    .await;
    assert!(gone.outcome.is_err());
    api.send(
        "DELETE",
        &format!("/provisioning-templates/{template}"),
        None,
    )
    .await
    .err(404, "ResourceNotFoundException");

    // The built-in claim certificate keeps its policy and still provisions with the seed template.
    let seed = device::provision(
        &m.endpoint,
        &m.tls,
        &common::seed_device("seeded", "FleetProvisioningTemplate"),
        &device::Handles::default(),
    )
    .await;
    assert!(seed.outcome.is_ok(), "{:?}", seed.outcome.err());
}

#[tokio::test]
async fn over_the_control_plane_quota_calls_get_throttling_exception() {
    let m = start_mock(|s| {
        s.quotas.enabled = true;
        s.quotas.control_plane_per_s = 1.0;
    })
    .await;
    let api = Api::new(&m);
    // A bucket of one call, refilled once a second: of five calls in a burst, the first passes
    // and at least one of the rest is refused.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let answer = api.get("/things").await;
        statuses.push((answer.status, answer.error.clone()));
    }
    assert_eq!(statuses[0], (200, None));
    assert!(
        statuses[1..].contains(&(400, Some("ThrottlingException".to_string()))),
        "{statuses:?}"
    );
}

/// UpdateCertificate from ACTIVE closes the connections made with that certificate (AWS: "within
/// a few minutes of updating a certificate from the ACTIVE state to any other state, AWS IoT
/// disconnects all devices that used that certificate"; the mock closes them at once), under
/// both MQTT versions, and leaves the connections of other certificates open.
#[tokio::test]
async fn a_certificate_set_inactive_or_revoked_loses_its_open_connections() {
    use crate::mqtt5_mock::V5;
    use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
    let m = start_mock(|_| {}).await;
    let api = Api::new(&m);
    let device = device::provision(
        &m.endpoint,
        &m.tls,
        &common::seed_device("kept", "FleetProvisioningTemplate"),
        &device::Handles::default(),
    )
    .await
    .outcome
    .expect("provisioned");
    let own = m
        .tls
        .for_identity(&device.certificate_pem, &device.private_key_pem)
        .unwrap();
    let mut claim_v311 = common::Client::connect(&m, "claim-311", m.tls.claim()).await;
    let mut claim_v5 = V5::connected(&m, "claim-5", m.tls.claim()).await;
    let mut kept = common::Client::connect(&m, &device.thing_name, own.clone()).await;

    let claim_id = fleetstorm::pki::certificate_id(&m.handle.pki.claim_cert_der);
    api.send(
        "PUT",
        &format!("/certificates/{claim_id}?newStatus=INACTIVE"),
        None,
    )
    .await
    .ok();
    assert_eq!(
        claim_v5.disconnected().await,
        DisconnectReasonCode::AdministrativeAction
    );
    let e = claim_v311.closed().await;
    assert!(
        !matches!(e, rumqttc::ConnectionError::ConnectionRefused(_)),
        "{e}"
    );
    // The claim can no longer connect; the device's own certificate is untouched.
    let (_, ack) = V5::connect(&m, "claim-again", m.tls.claim(), 30).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::NotAuthorized
    );
    kept.subscribe(&format!("things/{}/shadow/get/accepted", device.thing_name))
        .await;

    api.send(
        "PUT",
        &format!("/certificates/{}?newStatus=REVOKED", device.certificate_id),
        None,
    )
    .await
    .ok();
    kept.closed().await;
    let mut again = common::Client::new(&m, &device.thing_name, own);
    assert!(
        matches!(
            again.next().await,
            Err(rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::NotAuthorized
            ))
        ),
        "a revoked certificate connected again"
    );
}
