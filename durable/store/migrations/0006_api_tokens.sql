-- API bearer tokens. Only a SHA-256 of each token's secret is stored: the secret is
-- shown once, when the token is created.
CREATE TABLE durable.api_tokens (
    token_id text PRIMARY KEY,
    name text NOT NULL,
    scopes text[] NOT NULL,
    secret_sha256 bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text,
    revoked_at timestamptz
);
