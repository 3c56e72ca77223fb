# A pre-provisioning hook written for AWS Lambda (Python), the shape of the seed tutorial's
# Provisioning_hook.py: allow devices whose SerialNumber starts with SERIAL_STARTSWITH.
# fleetstorm runs it unchanged as a `command` hook through its Lambda shim.
import json
import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)

SERIAL_STARTSWITH = "123456"


def lambda_handler(event, context):
    logger.info("event: %s", json.dumps(event))
    response = {"allowProvisioning": False}
    parameters = event.get("parameters") or {}
    if "SerialNumber" not in parameters:
        logger.error("SerialNumber is missing from the request parameters")
        return response
    serial = parameters["SerialNumber"]
    if serial.startswith(SERIAL_STARTSWITH):
        response = {"allowProvisioning": True}
    else:
        logger.error("serial_number %s verification failed - does not start with %s", serial, SERIAL_STARTSWITH)
    logger.info("response: %s", json.dumps(response))
    return response
