"""A stand-in for one API Lambda container in its own process: reads API Gateway events (JSON, one
a line) on stdin, invokes `api.lambda_handler.handler` on each, prints each answer's status."""

from __future__ import annotations

import json
import sys

from api.lambda_handler import handler


def main() -> int:
    for line in sys.stdin:
        answer = handler(json.loads(line), None)
        print(answer["statusCode"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
