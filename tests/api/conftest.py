"""The API suite, part of `make test`: every service's and the gateway's OpenAPI document against the
conventions (test_conventions.py), and schemathesis against each of them running as a real process
(test_schemathesis.py; alone: `make schemathesis`) — see docs/api-conventions.md, "schemathesis"."""
