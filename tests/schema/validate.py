"""Validate JSON instances against a JSON Schema with the reference Python implementation.

Reads {"schema": ..., "instances": [...]} on stdin; prints one JSON list per instance (its
errors as "path: message" strings, empty when it is valid), one per line.
"""
import json
import sys

import jsonschema

doc = json.load(sys.stdin)
cls = jsonschema.validators.validator_for(doc["schema"])
cls.check_schema(doc["schema"])
validator = cls(doc["schema"])
for instance in doc["instances"]:
    errors = sorted(
        f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(instance)
    )
    print(json.dumps(errors))
