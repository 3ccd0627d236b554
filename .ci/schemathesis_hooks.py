"""Schemathesis hooks for .ci/run (SCHEMATHESIS_HOOKS=schemathesis_hooks).

The API document cannot say that `toTimestamp` must not be below
`fromTimestamp` (JSON Schema compares no two fields), so a generated body
that breaks it is dropped rather than reported as a valid request refused:
the function answers it 400, as the spec says, and tests/api/filters.rs
pins that.
"""

import schemathesis


def _ms(body, camel, snake):
    for key in (camel, snake):
        value = body.get(key)
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)) and float(value).is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                return None
    return None


@schemathesis.hook
def filter_body(context, body):
    if not isinstance(body, dict):
        return True
    start = _ms(body, "fromTimestamp", "from_timestamp")
    end = _ms(body, "toTimestamp", "to_timestamp")
    return start is None or end is None or end >= start
