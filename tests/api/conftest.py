"""The API suite: every service's and the gateway's OpenAPI document against the conventions
(test_conventions.py) and schemathesis against each of them running as a real process
(test_schemathesis.py: a bounded, derandomised run in `make test`; `make schemathesis` is the
thorough one — see docs/api-conventions.md, "schemathesis")."""
