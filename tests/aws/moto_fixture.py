"""moto helper for tests/it/aws_moto.rs.

serve            start moto on 127.0.0.1, an ephemeral port; print the port; run until stdin closes
populate URL     create a run's things, certificates and policies plus others that must survive;
                 print them as JSON
inspect URL      print the things, certificates (id -> status) and policies that exist, as JSON
"""
import json
import sys

import boto3


def client(url):
    return boto3.client(
        "iot",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


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
    else:
        sys.exit(f"unknown command {command}")
