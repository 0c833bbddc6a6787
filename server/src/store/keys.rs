//! The deployment's signing keyring in the shared database (migration 004): read it, and
//! create, import, rotate and prune it under the ring's one-row lock.
//!
//! Promises: every server sharing the database ends its start with the same ring, however
//! many start at once (one at a time holds the lock; the first creates, the others read
//! what it committed); there is at most one current key (a unique partial index says so
//! too); a rotation or a prune commits with a `keys_changed` event in the revocation log,
//! so every other server reloads. What a key is, and when to rotate, is decided by
//! `auth::keys`; this file only keeps the rows consistent.

use sqlx::Row;

use super::Store;
use crate::error::Result;
use crate::events::{LoggedEvent, RevocationEvent};

/// One signing key as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub kid: String,
    /// `HS256` or `EdDSA`.
    pub alg: String,
    /// HS256: the secret; EdDSA: the PKCS#8 private key. Standard base64.
    pub material: String,
    pub created_at_secs: i64,
    /// `None`: the current key.
    pub retired_at_secs: Option<i64>,
}

/// The whole ring: its keys, oldest first, and the refresh chain key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringRows {
    pub keys: Vec<KeyRow>,
    /// Derives each refresh token's successor. Standard base64.
    pub chain_key: String,
}

/// What opening the ring found and did.
#[derive(Debug)]
pub struct OpenedKeyring {
    pub ring: KeyringRows,
    /// The database had no ring: this server made it, from the seed it was given.
    pub created: bool,
    /// A new current key was added and the previous one retired.
    pub rotated: bool,
    /// Retired keys deleted because no token they signed can still be alive.
    pub pruned: u64,
    /// The `keys_changed` event that tells the other servers (none when nothing they hold
    /// changed).
    pub event: Option<LoggedEvent>,
}

const KEY_COLUMNS: &str = "kid, alg, material, created_at_secs, retired_at_secs";

impl Store {
    /// Open the ring at start, in one transaction under the ring's lock:
    /// - with no ring in the database yet, create it from `seed` (the keys and chain key of
    ///   this server's keyring file, if it had one, so tokens it signed keep verifying);
    /// - delete retired keys retired before `retired_before_secs`;
    /// - ask `successor`, given the keys left, for a new current key (rotation): if it
    ///   returns one, every current key is retired and the new one inserted.
    ///
    /// A rotation or a prune of a ring that already existed is logged as `keys_changed`,
    /// as the transaction's last write, so every other server reloads the ring.
    pub async fn open_keyring(
        &self,
        seed: &KeyringRows,
        retired_before_secs: i64,
        successor: impl FnOnce(&[KeyRow]) -> Result<Option<KeyRow>>,
    ) -> Result<OpenedKeyring> {
        let mut tx = self.pool.begin().await?;
        // Concurrent first starts: one insert wins; on PostgreSQL the others wait for its
        // commit and then insert nothing, on SQLite they wait for the write lock.
        let created = sqlx::query(
            "INSERT INTO signing_keyring (one, chain_key) VALUES (1, $1)
             ON CONFLICT (one) DO NOTHING",
        )
        .bind(&seed.chain_key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        // The lock, held to commit (see `lock_user` for why a no-op update).
        let chain_key: String = sqlx::query(
            "UPDATE signing_keyring SET chain_key = chain_key WHERE one = 1 RETURNING chain_key",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("chain_key")?;
        if created {
            for key in &seed.keys {
                insert_key(&mut tx, key).await?;
            }
        }
        let pruned = sqlx::query(
            "DELETE FROM signing_keys
             WHERE retired_at_secs IS NOT NULL AND retired_at_secs < $1",
        )
        .bind(retired_before_secs)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut keys = select_keys(&mut tx).await?;
        let new = successor(&keys)?;
        let rotated = new.is_some();
        if let Some(new) = new {
            sqlx::query(
                "UPDATE signing_keys SET retired_at_secs = $1 WHERE retired_at_secs IS NULL",
            )
            .bind(new.created_at_secs)
            .execute(&mut *tx)
            .await?;
            insert_key(&mut tx, &new).await?;
            keys = select_keys(&mut tx).await?;
        }
        let event = if !created && (rotated || pruned > 0) {
            let logged = self.log(&mut tx, RevocationEvent::KeysChanged {}).await?;
            Some(logged)
        } else {
            None
        };
        tx.commit().await?;
        Ok(OpenedKeyring {
            ring: KeyringRows { keys, chain_key },
            created,
            rotated,
            pruned,
            event,
        })
    }

    /// The ring as the database holds it now; `None` when there is none.
    pub async fn keyring(&self) -> Result<Option<KeyringRows>> {
        let mut conn = self.pool.acquire().await?;
        let Some(row) = sqlx::query("SELECT chain_key FROM signing_keyring WHERE one = 1")
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(KeyringRows {
            chain_key: row.try_get("chain_key")?,
            keys: select_keys(&mut conn).await?,
        }))
    }
}

async fn select_keys(conn: &mut sqlx::AnyConnection) -> sqlx::Result<Vec<KeyRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at_secs, kid"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(KeyRow {
                kid: r.try_get("kid")?,
                alg: r.try_get("alg")?,
                material: r.try_get("material")?,
                created_at_secs: r.try_get("created_at_secs")?,
                retired_at_secs: r.try_get("retired_at_secs")?,
            })
        })
        .collect()
}

async fn insert_key(conn: &mut sqlx::AnyConnection, key: &KeyRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(&key.material)
    .bind(key.created_at_secs)
    .bind(key.retired_at_secs)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
