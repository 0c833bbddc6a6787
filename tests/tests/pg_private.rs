//! The private PostgreSQL harness (`arena_tests::pg_private`) does what the failover and
//! restore tests rely on: a row committed on the primary after the replica was paused is
//! absent once the replica is promoted (an asynchronous replica that is behind), the
//! promoted replica takes writes through the same URL, and a dump restored over the
//! database (or into a new one) brings back exactly what the dump held.

use arena_tests::pg_private::{psql_at, try_psql_url, PgPrivate};

#[tokio::test]
async fn a_promoted_replica_lacks_what_was_committed_after_the_pause() {
    let mut pg = PgPrivate::with_replica().await;
    pg.psql("CREATE TABLE events (id bigint PRIMARY KEY)").await;
    pg.psql("INSERT INTO events VALUES (1), (2)").await;
    pg.wait_replica_caught_up().await;
    assert_eq!(pg.replica_psql("SELECT count(*) FROM events").await, "2");

    pg.pause_replica_replay().await;
    pg.psql("INSERT INTO events VALUES (3)").await;
    assert_eq!(pg.number("SELECT max(id) FROM events").await, 3);
    pg.kill_primary().await;
    pg.promote_replica().await;

    assert_eq!(
        pg.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM events")
            .await,
        "1,2",
        "the promoted replica must lack the commit made after the pause"
    );
    // The URL clients use now leads to the promoted replica, which takes writes.
    let through_proxy = try_psql_url(&pg.url(), "INSERT INTO events VALUES (4) RETURNING id").await;
    assert_eq!(through_proxy.as_deref(), Ok("4"));
}

#[tokio::test]
async fn a_dump_restored_over_the_database_brings_back_what_it_held() {
    let pg = PgPrivate::primary().await;
    pg.psql("CREATE TABLE events (id bigint PRIMARY KEY)").await;
    pg.psql("INSERT INTO events VALUES (1), (2)").await;
    let dump = pg.path("nightly.dump");
    pg.dump(&dump).await;
    pg.psql("INSERT INTO events VALUES (3), (4)").await;
    pg.psql("DELETE FROM events WHERE id = 1").await;

    let copy_url = pg.restore_into_new("arena_copy", &dump).await;
    assert!(copy_url.ends_with("/arena_copy"), "{copy_url}");
    assert_eq!(
        psql_at(
            pg.current_port(),
            "arena_copy",
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM events"
        )
        .await,
        "1,2"
    );
    assert_eq!(pg.number("SELECT count(*) FROM events").await, 3);

    pg.restore_over(&dump).await;
    assert_eq!(
        pg.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM events")
            .await,
        "1,2"
    );
}
