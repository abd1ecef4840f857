-- One database per service, created on the first start of the compose PostgreSQL
-- (/docker-entrypoint-initdb.d). Each service's <NAME>_DATABASE_URL in docker-compose.yml
-- names exactly one of these; tests/platform/test_compose.py checks both sides.
CREATE DATABASE membership;
CREATE DATABASE projects;
CREATE DATABASE newsletter;
CREATE DATABASE matchmaking;
CREATE DATABASE console;
CREATE DATABASE partners;
CREATE DATABASE gateway;
