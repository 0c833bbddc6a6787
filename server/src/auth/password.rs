//! Password hashing with Argon2id (the argon2 crate's defaults: 19 MiB, 2 passes, the
//! OWASP recommendation). Hashing is slow on purpose, so it runs on the blocking pool,
//! and a semaphore bounds how many run at once: a login flood queues instead of taking
//! every core and a few hundred MiB of memory.

use std::sync::{Arc, OnceLock};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Passwords {
    pub fn new(max_concurrent: usize) -> Passwords {
        Passwords {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_string();
        self.run(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::internal(format!("hashing a password: {e}")))
        })
        .await
    }

    /// Whether `password` matches `hash`. With `hash` = `None` (no such user) it checks
    /// against a fixed dummy hash, so the answer takes as long either way.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
        let password = password.to_string();
        let real = hash.is_some();
        let matched = self
            .run(move || {
                // The dummy hash is made on first use: here, on the blocking pool, like
                // every other hash, never on an async worker.
                let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
                Ok(Argon2::default()
                    .verify_password(password.as_bytes(), hash)
                    .is_ok())
            })
            .await?;
        Ok(real && matched)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::internal("password hasher closed"))?;
        tokio::task::spawn_blocking(move || {
            ON_HASHING_THREAD.set(true);
            let result = work();
            ON_HASHING_THREAD.set(false);
            result
        })
        .await
        .map_err(|e| Error::internal(format!("password task: {e}")))?
    }
}

thread_local! {
    /// Set while a blocking-pool thread runs hashing work: Argon2 anywhere else would
    /// stall an async worker (and every socket on it) for tens of milliseconds.
    static ON_HASHING_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    debug_assert!(
        ON_HASHING_THREAD.get(),
        "the dummy hash must be made on the blocking pool"
    );
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"arena-dummy-password-for-timing")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new(2);
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify("correct horse", Some(h.clone())).await.unwrap());
        assert!(!p.verify("wrong horse", Some(h)).await.unwrap());
        assert!(!p.verify("correct horse", None).await.unwrap());
    }
}
