"""A small fleet-provisioning responder for tests/it/mosquitto.rs: it answers the AWS IoT fleet
provisioning MQTT API (CreateKeysAndCertificate, CreateCertificateFromCsr, RegisterThing) on the
$aws topics, in JSON and CBOR, through a broker written by others (Mosquitto), signing device
certificates with the CA that the broker trusts.

    python responder.py --port P --ca root-ca.pem --ca-key root-ca.key --cert claim.pem --key claim.key

Prints "ready" once its subscriptions are acknowledged, then one line per answer.
"""

import argparse
import datetime
import json
import secrets
import ssl
import sys

import cbor2
import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REQUESTS = [
    "$aws/certificates/create/+",
    "$aws/certificates/create-from-csr/+",
    "$aws/provisioning-templates/+/provision/+",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--ca-key", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()

    with open(args.ca, "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(args.ca_key, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    tokens = {}

    def sign(public_key, subject):
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        certificate_id = secrets.token_hex(32)
        token = secrets.token_hex(16)
        tokens[token] = certificate_id
        return certificate_id, cert.public_bytes(serialization.Encoding.PEM).decode(), token

    def subject(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def answer(topic, request):
        """(accepted, response body) for one request."""
        if topic.startswith("$aws/certificates/create/"):
            key = ec.generate_private_key(ec.SECP256R1())
            certificate_id, pem, token = sign(key.public_key(), subject("device"))
            private_key = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            return True, {
                "certificateId": certificate_id,
                "certificatePem": pem,
                "privateKey": private_key,
                "certificateOwnershipToken": token,
            }
        if topic.startswith("$aws/certificates/create-from-csr/"):
            csr = x509.load_pem_x509_csr(request["certificateSigningRequest"].encode())
            certificate_id, pem, token = sign(csr.public_key(), csr.subject)
            return True, {
                "certificateId": certificate_id,
                "certificatePem": pem,
                "certificateOwnershipToken": token,
            }
        token = request.get("certificateOwnershipToken")
        if token not in tokens:
            return False, {
                "statusCode": 400,
                "errorCode": "InvalidCertificateOwnershipToken",
                "errorMessage": "Invalid certificate ownership token.",
            }
        del tokens[token]
        parameters = request.get("parameters") or {}
        thing = parameters.get("DeviceName") or "thing-" + secrets.token_hex(4)
        return True, {"thingName": thing, "deviceConfiguration": {}}

    def on_message(client, userdata, message):
        topic = message.topic
        fmt = topic.rsplit("/", 1)[-1]
        try:
            if fmt == "cbor":
                request = cbor2.loads(message.payload) if message.payload else {}
            else:
                request = json.loads(message.payload) if message.payload else {}
            ok, body = answer(topic, request)
        except Exception as e:  # a bad request gets a rejection, as AWS answers
            ok, body = False, {"statusCode": 400, "errorCode": "InvalidPayload", "errorMessage": str(e)}
        payload = cbor2.dumps(body) if fmt == "cbor" else json.dumps(body).encode()
        client.publish(topic + ("/accepted" if ok else "/rejected"), payload, qos=1)
        print(("accepted " if ok else "rejected ") + topic, flush=True)

    pending = set()

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            print("connect refused: %s" % reason_code, flush=True)
            sys.exit(1)
        for filter in REQUESTS:
            pending.add(client.subscribe(filter, qos=1)[1])

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if any(c.is_failure for c in reason_codes):
            print("subscribe refused: %s" % reason_codes, flush=True)
            sys.exit(1)
        pending.discard(mid)
        if not pending:
            print("ready", flush=True)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-provisioning-responder", protocol=mqtt.MQTTv5
    )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    context.load_cert_chain(args.cert, args.key)
    client.tls_set_context(context)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_forever()


if __name__ == "__main__":
    main()
