-- Signed chain heads (docs/integrity.md): the sealer signs each head it appends with an
-- Ed25519 key kept outside the database, and publishes the signed heads outward (a JSON-lines
-- file, GET /api/v1/integrity/signed-heads). The rows here are a copy for the API to serve:
-- whoever controls the database can delete them, but cannot make new ones that verify.
CREATE TABLE chain_head_signature (
    id          bigserial PRIMARY KEY,
    sensor_id   integer NOT NULL,
    mine_code   text NOT NULL,
    sensor_code text NOT NULL,
    seq         bigint NOT NULL CHECK (seq >= 1),
    entry_hash  bytea NOT NULL CHECK (octet_length(entry_hash) = 32),
    signed_at   timestamptz NOT NULL,
    key_id      text NOT NULL,
    signature   bytea NOT NULL CHECK (octet_length(signature) = 64),
    -- publication order is (xid, id), shown once the writing transaction is older than every
    -- running one (as the alert feed, migration 007): a head that commits late is not skipped
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (sensor_id, seq, key_id),
    FOREIGN KEY (sensor_id, seq) REFERENCES seal_entry (sensor_id, seq)
);
CREATE INDEX chain_head_signature_feed ON chain_head_signature (xid, id);
CREATE INDEX chain_head_signature_sensor ON chain_head_signature (sensor_id, seq);
CREATE TRIGGER chain_head_signature_append_only BEFORE UPDATE OR DELETE ON chain_head_signature
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER chain_head_signature_no_truncate BEFORE TRUNCATE ON chain_head_signature
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
