#!/usr/bin/env python3
"""Fleet provisioning by claim, driven through the official AWS IoT Device SDK v2 for Python.

Acceptance-test client for the fleetstorm mock of AWS IoT Core. It:

1. connects over MQTT 3.1.1 (``--protocol mqtt311``, the default) or MQTT 5
   (``--protocol mqtt5``: ``awsiot.mqtt5_client_builder``) + mutual TLS with the
   claim certificate,
2. calls CreateKeysAndCertificate (``--mode keys``) or CreateCertificateFromCsr
   (``--mode csr``) through ``awsiot.iotidentity.IotIdentityClientV2``,
3. calls RegisterThing with ``--template``, ``--params`` and the ownership token
   (or ``--token-override``),
4. on success writes ``device-cert.pem`` and ``device-key.pem`` into ``--workdir``,
   disconnects the claim connection and connects once more with the new
   certificate and a new client id, then disconnects.

Exactly one JSON object is printed on stdout at the end::

    {"ok": bool, "stage": "create|register|connect_device|done",
     "certificateId": str|null, "thingName": str|null,
     "deviceConfiguration": object|null, "privateKeyHeader": str|null,
     "error": {"statusCode": int, "errorCode": str, "errorMessage": str}|null,
     "exception": str|null}

``stage`` is the stage that failed, or ``done``. A failure to open the claim
connection is reported as stage ``create``. ``error`` is set (and ``exception``
is null) only when the service answered on a ``.../rejected`` topic; every other
failure (timeouts, SUBACK failure, TLS or CONNACK refusal, malformed response)
leaves ``error`` null and is described in ``exception``.

Exit status: 0 when a verdict was reached (including a rejection or a failed
connection), 1 on an unexpected crash (the JSON object is still printed, and a
traceback goes to stderr), 2 on bad command-line usage.

Every wait is bounded by 30 seconds. Standard library + awsiotsdk/awscrt only.
"""

import argparse
import concurrent.futures
import json
import os
import sys
import traceback
import uuid

from awscrt import io, mqtt, mqtt5, mqtt_request_response
from awsiot import V2ServiceException, iotidentity, mqtt5_client_builder, mqtt_connection_builder

WAIT_TIMEOUT_SECS = 30
KEEP_ALIVE_SECS = 30
STAGES = ("create", "register", "connect_device", "done")
DEVICE_CERT_FILE = "device-cert.pem"
DEVICE_KEY_FILE = "device-key.pem"
CRT_LOG_LEVELS = {
    "none": io.LogLevel.NoLogs,
    "error": io.LogLevel.Error,
    "warn": io.LogLevel.Warn,
    "info": io.LogLevel.Info,
    "debug": io.LogLevel.Debug,
    "trace": io.LogLevel.Trace,
}


class StageFailure(Exception):
    """An SDK operation failed or timed out: a verdict, not a crash."""

    def __init__(self, what, cause):
        super().__init__(what)
        self.what = what
        self.cause = cause


# --------------------------------------------------------------------------- arguments

def _string_map(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise argparse.ArgumentTypeError("must be a JSON object whose values are all strings")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Fleet provisioning by claim through the AWS IoT Device SDK v2 for Python "
                    "(MQTT 3.1.1 or 5, mutual TLS). Prints one JSON verdict object on stdout.")
    parser.add_argument("--endpoint", required=True, help="host name of the MQTT broker (also the TLS SNI name)")
    parser.add_argument("--port", required=True, type=int, help="MQTT over TLS port")
    parser.add_argument("--ca", required=True, help="PEM file of the root CA; the only trust anchor used")
    parser.add_argument("--cert", required=True, help="claim certificate PEM file")
    parser.add_argument("--key", required=True, help="claim private key PEM file")
    parser.add_argument("--protocol", choices=("mqtt311", "mqtt5"), default="mqtt311",
                        help="mqtt311: awsiot.mqtt_connection_builder; mqtt5: awsiot.mqtt5_client_builder")
    parser.add_argument("--template", required=True, help="provisioning template name")
    parser.add_argument("--mode", required=True, choices=("keys", "csr"),
                        help="keys: CreateKeysAndCertificate; csr: CreateCertificateFromCsr")
    parser.add_argument("--workdir", required=True, help="directory the new device certificate and key are written to")
    parser.add_argument("--csr", help="CSR PEM file (required with --mode csr)")
    parser.add_argument("--csr-key", help="private key PEM file matching --csr (required with --mode csr)")
    parser.add_argument("--params", type=_string_map, default=None,
                        help="RegisterThing parameters, a JSON object of strings")
    parser.add_argument("--token-override", default=None,
                        help="send this string as certificateOwnershipToken instead of the one received")
    parser.add_argument("--device-client-id", default=None,
                        help="client id of the second (device) connection; '{thingName}' is replaced by the "
                             "provisioned thing name (default: a fresh unique id)")
    parser.add_argument("--crt-log", choices=sorted(CRT_LOG_LEVELS), default="none",
                        help="awscrt native log level, written to stderr (default: none)")
    args = parser.parse_args(argv)
    if args.mode == "csr" and not (args.csr and args.csr_key):
        parser.error("--mode csr requires --csr and --csr-key")
    return args


# --------------------------------------------------------------------------- SDK helpers

def wait(future, what):
    """Wait at most WAIT_TIMEOUT_SECS for an SDK future; turn any failure into StageFailure."""
    try:
        return future.result(timeout=WAIT_TIMEOUT_SECS)
    except concurrent.futures.TimeoutError as exc:
        raise StageFailure(what, TimeoutError(f"no result within {WAIT_TIMEOUT_SECS}s")) from exc
    except Exception as exc:  # the future's own exception: a verdict from the SDK or the peer
        raise StageFailure(what, exc) from exc


def new_client_id(role):
    return f"fleetstorm-sdk-{role}-{uuid.uuid4().hex[:16]}"


def tls_kwargs(args, cert_path, key_path, client_id):
    """The builder arguments both protocols share: where to connect, as whom."""
    return dict(endpoint=args.endpoint, port=args.port, cert_filepath=cert_path,
                pri_key_filepath=key_path, ca_filepath=args.ca, client_id=client_id)


class Mqtt311Session:
    """An awscrt.mqtt.Connection from awsiot.mqtt_connection_builder."""

    def __init__(self, args, cert_path, key_path, client_id):
        self.client = mqtt_connection_builder.mtls_from_path(
            **tls_kwargs(args, cert_path, key_path, client_id),
            clean_session=True,
            keep_alive_secs=KEEP_ALIVE_SECS,
        )

    def open(self, what):
        wait(self.client.connect(), what)

    def close(self):
        """Best-effort, bounded disconnect; never raises."""
        try:
            self.client.disconnect().result(timeout=WAIT_TIMEOUT_SECS)
        except Exception as exc:
            if "AWS_ERROR_MQTT_NOT_CONNECTED" not in str(exc):  # never connected: nothing to close
                print(f"fleet_provision: disconnect failed: {describe(exc)}", file=sys.stderr)


class Mqtt5Session:
    """An awscrt.mqtt5.Client from awsiot.mqtt5_client_builder; its lifecycle events as futures."""

    def __init__(self, args, cert_path, key_path, client_id):
        self.connected = concurrent.futures.Future()
        self.stopped = concurrent.futures.Future()
        self.started = False
        self.client = mqtt5_client_builder.mtls_from_path(
            **tls_kwargs(args, cert_path, key_path, client_id),
            keep_alive_interval_sec=KEEP_ALIVE_SECS,
            on_lifecycle_connection_success=self._on_success,
            on_lifecycle_connection_failure=self._on_failure,
            on_lifecycle_stopped=self._on_stopped,
        )

    def _on_success(self, data):
        if not self.connected.done():
            self.connected.set_result(data.connack_packet)

    def _on_failure(self, data):
        # The client retries on its own; the first failure is the verdict.
        if self.connected.done():
            return
        connack = data.connack_packet
        if connack is not None and connack.reason_code is not None:
            reason = connack.reason_code
            cause = ConnectionError(f"CONNACK refused: {reason.name} ({int(reason)})")
        else:
            cause = data.exception or ConnectionError("connection failed")
        self.connected.set_exception(cause)

    def _on_stopped(self, _data):
        if not self.stopped.done():
            self.stopped.set_result(None)

    def open(self, what):
        self.started = True
        self.client.start()
        wait(self.connected, what)

    def close(self):
        """Best-effort, bounded stop; never raises."""
        if not self.started:
            return
        try:
            self.client.stop(mqtt5.DisconnectPacket())
            self.stopped.result(timeout=WAIT_TIMEOUT_SECS)
        except Exception as exc:
            print(f"fleet_provision: stop failed: {describe(exc)}", file=sys.stderr)


def new_session(args, cert_path, key_path, client_id):
    kind = Mqtt5Session if args.protocol == "mqtt5" else Mqtt311Session
    return kind(args, cert_path, key_path, client_id)


def close_quietly(session):
    if session is not None:
        session.close()


def describe(exc):
    """One-line description of an exception (V2ServiceException has an empty str())."""
    if isinstance(exc, StageFailure):
        return f"{exc.what}: {describe(exc.cause)}"
    if isinstance(exc, V2ServiceException):
        parts = [exc.message]
        if exc.inner_error is not None:
            parts.append(describe(exc.inner_error))
        if exc.modeled_error is not None:
            parts.append(repr(exc.modeled_error))
        return ": ".join(parts)
    if exc.args and isinstance(exc.args[0], mqtt.ConnectReturnCode):  # awscrt.mqtt.Connection.connect()
        return f"CONNACK refused: {exc.args[0].name} ({int(exc.args[0])})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else repr(exc)


def service_error(exc):
    """The modeled error of a rejected request, or None."""
    cause = exc.cause if isinstance(exc, StageFailure) else exc
    if not isinstance(cause, V2ServiceException) or cause.modeled_error is None:
        return None
    modeled = cause.modeled_error
    return {
        "statusCode": modeled.status_code,
        "errorCode": modeled.error_code,
        "errorMessage": modeled.error_message,
    }


def read_text(path):
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def create_credentials(identity, csr_pem):
    """CreateKeysAndCertificate (csr_pem None) or CreateCertificateFromCsr; returns the modeled response."""
    if csr_pem is None:
        future = identity.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest())
        return wait(future, "CreateKeysAndCertificate")
    future = identity.create_certificate_from_csr(
        iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr_pem))
    return wait(future, "CreateCertificateFromCsr")


def register_thing(identity, args, ownership_token):
    request = iotidentity.RegisterThingRequest(
        template_name=args.template,
        certificate_ownership_token=ownership_token,
        parameters=args.params,
    )
    return wait(identity.register_thing(request), "RegisterThing")


def write_device_credentials(workdir, cert_pem, key_pem):
    os.makedirs(workdir, exist_ok=True)
    cert_path = os.path.join(workdir, DEVICE_CERT_FILE)
    key_path = os.path.join(workdir, DEVICE_KEY_FILE)
    with open(cert_path, "w", encoding="utf-8") as f:
        f.write(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key_pem)
    return cert_path, key_path


def first_line(text):
    return text.splitlines()[0] if text else None


# --------------------------------------------------------------------------- flow

def provision(args, result):
    """Run every stage, filling `result` as it goes. Raises StageFailure on a verdict failure."""
    # Read local inputs first: a missing file is a usage error, not an SDK verdict.
    csr_pem = read_text(args.csr) if args.mode == "csr" else None
    csr_key_pem = read_text(args.csr_key) if args.mode == "csr" else None

    claim = None
    identity = None
    try:
        result["stage"] = "create"
        claim = new_session(args, args.cert, args.key, new_client_id("claim"))
        claim.open("claim connection")
        identity = iotidentity.IotIdentityClientV2(
            claim.client,
            mqtt_request_response.ClientOptions(
                max_request_response_subscriptions=2,
                max_streaming_subscriptions=0,
                operation_timeout_in_seconds=WAIT_TIMEOUT_SECS,
            ),
        )

        created = create_credentials(identity, csr_pem)
        result["certificateId"] = created.certificate_id
        if args.mode == "keys":
            result["privateKeyHeader"] = first_line(created.private_key)
            device_key_pem = created.private_key
        else:
            device_key_pem = csr_key_pem
        if not created.certificate_pem or not device_key_pem:
            raise StageFailure("create response", ValueError("certificatePem or privateKey missing"))

        result["stage"] = "register"
        token = args.token_override if args.token_override is not None else created.certificate_ownership_token
        registered = register_thing(identity, args, token)
        result["thingName"] = registered.thing_name
        result["deviceConfiguration"] = registered.device_configuration or {}
    finally:
        # Drop the request-response client before its connection, then close the claim session.
        del identity
        close_quietly(claim)

    result["stage"] = "connect_device"
    cert_path, key_path = write_device_credentials(args.workdir, created.certificate_pem, device_key_pem)
    if args.device_client_id:
        device_client_id = args.device_client_id.replace("{thingName}", registered.thing_name or "")
    else:
        device_client_id = new_client_id("device")
    device = new_session(args, cert_path, key_path, device_client_id)
    try:
        device.open("device connection")
    finally:
        close_quietly(device)

    result["stage"] = "done"
    result["ok"] = True


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.crt_log != "none":
        io.init_logging(CRT_LOG_LEVELS[args.crt_log], "stderr")

    result = {
        "ok": False,
        "stage": STAGES[0],
        "certificateId": None,
        "thingName": None,
        "deviceConfiguration": None,
        "privateKeyHeader": None,
        "error": None,
        "exception": None,
    }
    exit_code = 0
    try:
        provision(args, result)
    except StageFailure as failure:
        result["error"] = service_error(failure)
        if result["error"] is None:
            result["exception"] = describe(failure)
    except Exception as exc:  # a bug or an environment problem: still report, but fail the process
        traceback.print_exc(file=sys.stderr)
        result["exception"] = f"unexpected: {describe(exc)}"
        exit_code = 1

    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
