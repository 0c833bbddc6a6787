-- The signing keyring of a deployment whose servers share this database (--database-url
-- without --jwt-secret): one ring for every server, so a token from any of them verifies
-- on all of them. A lone server on the embedded default keeps its ring in
-- signing-keys.json and leaves these tables empty. The key material is secret: whoever
-- can read these tables can sign tokens (see docs/security.md).
--
-- The one-row table is also the ring's lock: creating, importing, rotating and pruning
-- the ring take it (a no-op UPDATE ... RETURNING) and hold it to commit.
CREATE TABLE signing_keyring (
    one         INTEGER PRIMARY KEY CHECK (one = 1),
    chain_key   TEXT NOT NULL        -- derives refresh-token successors; standard base64
);

CREATE TABLE signing_keys (
    kid              TEXT PRIMARY KEY,
    alg              TEXT NOT NULL,  -- HS256 or EdDSA
    material         TEXT NOT NULL,  -- HS256: the secret; EdDSA: PKCS#8; standard base64
    created_at_secs  BIGINT NOT NULL,
    retired_at_secs  BIGINT          -- NULL: the current key
);
-- At most one current key: every row of this partial index has the same value.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at_secs IS NULL))
    WHERE retired_at_secs IS NULL;
