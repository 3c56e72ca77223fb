# fleetstorm's AWS Lambda shim: runs a Python handler file written for Lambda unchanged.
# Protocol: one JSON event per line on stdin -> one JSON line on stdout:
#   {"ok": <handler return value>} or {"error": "<exception text>"}.
# The handler's own prints and logging go to stderr so they cannot corrupt the protocol.
import importlib.util
import json
import logging
import sys
import time
import traceback
import uuid


class Context:
    def __init__(self, name, deadline_ms):
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:local:000000000000:function:" + name
        self.memory_limit_in_mb = "128"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/" + name
        self.log_stream_name = "fleetstorm"
        self._deadline = time.monotonic() + deadline_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main():
    path, handler_name, deadline_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    protocol = sys.stdout
    sys.stdout = sys.stderr
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    spec = importlib.util.spec_from_file_location("fleetstorm_hook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = getattr(module, handler_name)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            result = {"ok": handler(event, Context(handler_name, deadline_ms))}
            text = json.dumps(result)
        except Exception as exc:  # the handler failed: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            text = json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)})
        protocol.write(text + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
