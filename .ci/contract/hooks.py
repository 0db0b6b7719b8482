"""Schemathesis hooks for the contract run (.ci/contract.sh).

An `Idempotency-Key` names one logical request: a client never sends the same
key with another body. Schemathesis reuses generated header values across test
cases, which the hub rightly answers with 422 `idempotency_key_reused` (or 409
while the first is in flight). So each call that carries a valid key gets a
fresh one, as a real client's would be; invalid keys (negative cases) are kept.

Schemathesis's coverage phase builds its "positive" bodies member by member
and does not apply every rule between members: a tracking call whose only ids
are blocked values (`"userId": "0"`) breaks the document's
`anyOf`/`not: {enum}` rule, yet is labelled positive, and the hub's 400 is then
reported as "schema-valid request rejected". Such a case is checked against
the document with the validator schemathesis itself ships (jsonschema_rs,
JSON Schema 2020-12) and, when the body is not valid, relabelled negative, so
the negative checks still require the hub to refuse it. Valid bodies are left
alone: every real mismatch is still reported.
"""

import json
import re
import uuid
from pathlib import Path

import jsonschema_rs
import schemathesis
from schemathesis.generation.modes import GenerationMode

VALID_KEY = re.compile(r"^[ \t]*[!-~]([ \t!-~]{0,253}[!-~])?[ \t]*$")
DOCUMENT = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
_validators = {}


def _fresh(headers):
    if not headers:
        return
    for name in list(headers):
        if name.lower() == "idempotency-key":
            value = headers[name]
            if isinstance(value, str) and VALID_KEY.match(value):
                headers[name] = f"contract-{uuid.uuid4()}"


def _body_validator(method, path, media_type):
    key = (method, path, media_type)
    if key not in _validators:
        operation = DOCUMENT["paths"].get(path, {}).get(method, {})
        content = operation.get("requestBody", {}).get("content", {})
        schema = content.get(media_type, {}).get("schema")
        validator = None
        if schema is not None:
            # The whole document as the root, so `#/components/…` resolves.
            root = dict(DOCUMENT)
            root["$ref"] = "#/$defs/body"
            root["$defs"] = {"body": schema}
            validator = jsonschema_rs.Draft202012Validator(root)
        _validators[key] = validator
    return _validators[key]


def _relabel_invalid_positive(case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if not isinstance(case.body, (dict, list)):
        return
    media_type = case.media_type or "application/json"
    validator = _body_validator(case.method.lower(), case.path, media_type)
    if validator is not None and not validator.is_valid(case.body):
        meta.generation.mode = GenerationMode.NEGATIVE


@schemathesis.hook
def before_call(context, case, kwargs):
    _fresh(case.headers)
    _fresh(kwargs.get("headers"))
    _relabel_invalid_positive(case)
