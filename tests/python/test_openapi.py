"""The OpenAPI document, checked by an independent validator (openapi-spec-validator), so code
generators and API tools can use it as it is served."""
import json
import urllib.request

from openapi_spec_validator import validate


def test_the_served_openapi_document_is_valid(tverr):
    with tverr.serve() as base:
        with urllib.request.urlopen(base + "/api/v1/openapi.json") as r:
            document = json.load(r)
    validate(document)
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values() if isinstance(op, dict) and "operationId" in op]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
