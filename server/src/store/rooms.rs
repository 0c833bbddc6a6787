//! Room records: a room's definition (id, name, capacity, creator, creation time) and when
//! it became empty. The game state is not here: it lives on the node that runs the room.
//!
//! The deployment-wide cap is the one-row `room_count`, updated with `n < max` in the
//! transaction that inserts the room (a row lock on PostgreSQL, the write lock on SQLite),
//! so racing creations on any nodes cannot exceed it; a user's quota is counted with the
//! user row locked, so one user's racing creations cannot both take the last place.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{lock_user, Store};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    pub id: String,
    pub name: String,
    pub capacity: u32,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub empty_since: Option<i64>,
}

impl RoomRow {
    const COLUMNS: &'static str = "id, name, capacity, created_by, created_at, empty_since";

    fn from_row(r: &AnyRow) -> sqlx::Result<RoomRow> {
        let capacity: i64 = r.try_get("capacity")?;
        Ok(RoomRow {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            capacity: u32::try_from(capacity).unwrap_or(0),
            created_by: r.try_get("created_by")?,
            created_at: r.try_get("created_at")?,
            empty_since: r.try_get("empty_since")?,
        })
    }
}

/// Why a room was not created (the store's part of [`crate::game::lobby::CreateError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRefusal {
    /// The creator has this many rooms already.
    Quota { have: usize },
    /// The deployment holds as many rooms as it may.
    Full,
}

impl Store {
    /// Make the server's own room `row` unless it exists (every node does this at start;
    /// the first one creates it, once per deployment).
    pub async fn ensure_room(&self, row: &RoomRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let inserted = insert_room(&mut tx, row).await?;
        if inserted {
            sqlx::query("UPDATE room_count SET n = n + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Add a player's room within their quota and the deployment's cap.
    pub async fn create_room(
        &self,
        row: &RoomRow,
        max_rooms: usize,
        max_per_user: usize,
    ) -> Result<std::result::Result<(), RoomRefusal>> {
        let creator = row.created_by.as_deref().unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        lock_user(&mut tx, creator).await?;
        let have: i64 = sqlx::query("SELECT COUNT(*) AS n FROM rooms WHERE created_by = $1")
            .bind(creator)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        let have = usize::try_from(have).unwrap_or(usize::MAX);
        if have >= max_per_user {
            return Ok(Err(RoomRefusal::Quota { have }));
        }
        let took = sqlx::query("UPDATE room_count SET n = n + 1 WHERE id = 1 AND n < $1")
            .bind(i64::try_from(max_rooms).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if took != 1 {
            return Ok(Err(RoomRefusal::Full));
        }
        insert_room(&mut tx, row).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Every room, by name then id.
    pub async fn rooms(&self) -> Result<Vec<RoomRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM rooms ORDER BY name, id",
            RoomRow::COLUMNS
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(RoomRow::from_row)
            .collect::<sqlx::Result<_>>()?)
    }

    pub async fn room(&self, id: &str) -> Result<Option<RoomRow>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM rooms WHERE id = $1",
            RoomRow::COLUMNS
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(RoomRow::from_row).transpose()?)
    }

    /// A node takes the room on (it holds its lease): it is in use from now on. `None`:
    /// the room no longer exists.
    pub async fn occupy_room(&self, id: &str) -> Result<Option<RoomRow>> {
        let row = sqlx::query(&format!(
            "UPDATE rooms SET empty_since = NULL WHERE id = $1 RETURNING {}",
            RoomRow::COLUMNS
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(RoomRow::from_row).transpose()?)
    }

    /// The room's last player left at `now` (its idle time starts), unless it already
    /// counts as empty since earlier.
    pub async fn room_emptied(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE rooms SET empty_since = $1 WHERE id = $2 AND empty_since IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Remove a player's room that has been empty since `cutoff` or earlier. Call only
    /// while holding the room's lease (nobody can be joining it). Whether it went.
    pub async fn delete_idle_room(&self, id: &str, cutoff: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query(
            "DELETE FROM rooms WHERE id = $1 AND created_by IS NOT NULL
             AND empty_since IS NOT NULL AND empty_since <= $2",
        )
        .bind(id)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if gone {
            sqlx::query("UPDATE room_count SET n = n - 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(gone)
    }
}

async fn insert_room(conn: &mut sqlx::AnyConnection, row: &RoomRow) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO rooms (id, name, capacity, created_by, created_at, empty_since)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(i64::from(row.capacity))
    .bind(&row.created_by)
    .bind(row.created_at)
    .bind(row.empty_since)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
