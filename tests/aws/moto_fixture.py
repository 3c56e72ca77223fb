"""moto helper for tests/it/aws_moto.rs.

serve            start moto on 127.0.0.1, an ephemeral port; print the port; run until stdin closes
populate URL     create a run's things, certificates and policies plus others that must survive;
                 print them as JSON
inspect URL      print the things, certificates (id -> status) and policies that exist, as JSON
put-metrics URL START TEMPLATE CLAIM
                 put AWS/IoT datapoints into CloudWatch for the minutes from START (Unix seconds,
                 a minute's start): minute 0 and 1 as a run against AWS would leave them
deny-user URL    create an IAM user with an access key and no policy; print the key as JSON
                 (with a server started with INITIAL_NO_AUTH_ACTION_COUNT=2, every later call
                 with that key is denied)
"""
import datetime
import json
import sys

import boto3


def client(url, service="iot"):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def put_metrics(url, start, template, claim):
    """Minute 0: 40 connects, 2 throttled; 30 CreateKeysAndCertificate (1 failed); 30
    RegisterThing with 12 failed (value 1) and 18 succeeded (value 0); 18 things registered.
    Minute 1: 5 RegisterThing, all failed. Provisioning metrics are 0 or 1 per call."""
    cw = client(url, "cloudwatch")
    start = int(start)

    def at(minute, second=10):
        return datetime.datetime.fromtimestamp(start + minute * 60 + second, datetime.timezone.utc)

    def put(name, minute, values, dimensions=()):
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": n, "Value": v} for n, v in dimensions],
                "Timestamp": at(minute),
                "Value": float(v),
            }
            for v in values
        ]
        # moto answers 500 to a request of more than a few dozen datapoints: 20 at a time.
        for i in range(0, len(data), 20):
            cw.put_metric_data(Namespace="AWS/IoT", MetricData=data[i : i + 20])

    mqtt = [("Protocol", "MQTT")]
    put("Connect.Success", 0, [40], mqtt)
    put("Connect.Throttle", 0, [2], mqtt)
    put("CreateKeysAndCertificateFailed", 0, [1] + [0] * 29)
    put("RegisterThingFailed", 0, [1] * 12 + [0] * 18, [("TemplateName", template)])
    put("RegisterThingFailed", 1, [1] * 5, [("TemplateName", template)])
    # Another template's failures: not this run's.
    put("RegisterThingFailed", 0, [1] * 99, [("TemplateName", "someone-elses")])
    put("ApproximateNumberOfThingsRegistered", 0, [18], [("ClaimCertificateId", claim)])
    print(json.dumps({"ok": True}), flush=True)


def deny_user(url):
    iam = client(url, "iam")
    iam.create_user(UserName="no-permissions")
    key = iam.create_access_key(UserName="no-permissions")["AccessKey"]
    print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}), flush=True)


def serve():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


def cert(iot):
    c = iot.create_keys_and_certificate(setAsActive=True)
    return {"id": c["certificateId"], "arn": c["certificateArn"]}


def populate(url, prefix):
    iot = client(url)
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]})
    iot.create_policy(policyName="preexisting-shared", policyDocument=doc)
    iot.create_policy(policyName="unrelated", policyDocument=doc)
    run = {"devices": [], "orphan": None, "others": {}}
    for i in range(3):
        thing = f"{prefix}dev-{i}"
        policy = f"{prefix}pol-{i}"
        c = cert(iot)
        iot.create_thing(thingName=thing)
        iot.attach_thing_principal(thingName=thing, principal=c["arn"])
        iot.create_policy(policyName=policy, policyDocument=doc)
        iot.attach_policy(policyName=policy, target=c["arn"])
        iot.attach_policy(policyName="preexisting-shared", target=c["arn"])
        run["devices"].append({"thing": thing, "policy": policy, **c})
    # A certificate that never reached RegisterThing.
    run["orphan"] = cert(iot)
    # Another device's resources that must survive.
    other = cert(iot)
    iot.create_thing(thingName="other-0")
    iot.attach_thing_principal(thingName="other-0", principal=other["arn"])
    iot.attach_policy(policyName="preexisting-shared", target=other["arn"])
    run["others"] = {"thing": "other-0", **other}
    print(json.dumps(run), flush=True)


def inspect(url):
    iot = client(url)
    things = [t["thingName"] for t in iot.list_things()["things"]]
    certs = {c["certificateId"]: c["status"] for c in iot.list_certificates()["certificates"]}
    policies = [p["policyName"] for p in iot.list_policies()["policies"]]
    print(json.dumps({"things": things, "certificates": certs, "policies": policies}), flush=True)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "serve":
        serve()
    elif command == "populate":
        populate(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
    elif command == "inspect":
        inspect(sys.argv[2])
    elif command == "put-metrics":
        put_metrics(*sys.argv[2:6])
    elif command == "deny-user":
        deny_user(sys.argv[2])
    else:
        sys.exit(f"unknown command {command}")
