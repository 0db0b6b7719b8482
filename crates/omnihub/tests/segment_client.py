"""Sends calls to an omnihub test server with the official Segment client.

Usage: python3 segment_client.py BASE_URL WRITE_KEY [gzip]

Installed from PyPI: `pip install segment-analytics-python`. The client sends
`POST {host}/v1/batch` with HTTP Basic auth (write key as user name), exactly
as it does to Segment; only `host` changes. With `gzip` the client compresses
its bodies (`Content-Encoding: gzip`).
"""

import sys

import segment.analytics as analytics


def main() -> int:
    base, key = sys.argv[1], sys.argv[2]
    errors = []
    analytics.write_key = key
    analytics.host = base
    analytics.sync_mode = True
    analytics.gzip = len(sys.argv) > 3 and sys.argv[3] == "gzip"
    analytics.max_retries = 1
    analytics.on_error = lambda error, items: errors.append(repr(error))
    analytics.page(anonymous_id="segment-anon-1", name="Home", properties={"path": "/"})
    analytics.identify(
        "segment-user-1",
        {"name": "Grace Hopper", "email": "grace@example.com"},
        anonymous_id="segment-anon-1",
    )
    analytics.track("segment-user-1", "Order Completed", {"revenue": 42.5, "currency": "EUR"})
    analytics.flush()
    if errors:
        print("errors:", errors)
        return 1
    print("sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
