-- Web-page sessions (docs/access.md). The cookie holds a random session id; the table
-- holds its SHA-256, never the id or the API token. A session is live while it is not
-- revoked (logout), not past its absolute end, used within the idle timeout, and its
-- token is live: revoking or expiring the token ends every session made with it.
CREATE TABLE api_session (
    id           bigserial PRIMARY KEY,
    session_hash bytea NOT NULL UNIQUE,
    token_id     integer NOT NULL REFERENCES api_token (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    -- where the login came from, for the operators (not used to decide anything)
    client       text
);
CREATE INDEX api_session_token ON api_session (token_id);
CREATE INDEX api_session_expires ON api_session (expires_at);
