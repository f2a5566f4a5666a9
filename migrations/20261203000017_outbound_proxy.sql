-- The Outbound Proxy of System > Settings (GR-3): one row for the whole
-- cluster, since every node reaches Microsoft 365 the same way. No row:
-- the service's HTTPS_PROXY / NO_PROXY apply. A row with no URL: the
-- administrator cleared the proxy, so none is used even when HTTPS_PROXY
-- is set. The password is sealed like the Exchange passwords.
CREATE TABLE outbound_proxy (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    url                 TEXT,
    user_name           TEXT,
    password_nonce      BLOB,
    password_ciphertext BLOB,
    no_proxy            TEXT    NOT NULL DEFAULT '',
    updated_at          INTEGER NOT NULL,
    CHECK ((password_nonce IS NULL) = (password_ciphertext IS NULL)),
    -- A password belongs to a user, and credentials to a proxy.
    CHECK (user_name IS NOT NULL OR password_nonce IS NULL),
    CHECK (url IS NOT NULL OR user_name IS NULL)
);
