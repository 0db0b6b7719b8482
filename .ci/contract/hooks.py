"""Schemathesis hooks for the contract run (.ci/contract.sh).

An `Idempotency-Key` names one logical request: a client never sends the same
key with another body. Schemathesis reuses generated header values across test
cases, which the hub rightly answers with 422 `idempotency_key_reused` (or 409
while the first is in flight). So each call that carries a valid key gets a
fresh one, as a real client's would be; invalid keys (negative cases) are kept.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[ \t]*[!-~]([ \t!-~]{0,253}[!-~])?[ \t]*$")


def _fresh(headers):
    if not headers:
        return
    for name in list(headers):
        if name.lower() == "idempotency-key":
            value = headers[name]
            if isinstance(value, str) and VALID_KEY.match(value):
                headers[name] = f"contract-{uuid.uuid4()}"


@schemathesis.hook
def before_call(context, case, kwargs):
    _fresh(case.headers)
    _fresh(kwargs.get("headers"))
