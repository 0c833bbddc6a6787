//! Password hashing with Argon2id (the argon2 crate's defaults: 19 MiB, 2 passes, the
//! OWASP recommendation), on a fixed set of hashing threads behind a bounded queue.
//!
//! Promises: at most `threads` hashes run at once (about the core count), at most `queue`
//! more wait; one more is refused at once with 503 `unavailable` and `Retry-After`, so a
//! login flood costs a bounded amount of CPU and memory and is told to come back instead
//! of piling up. Memory: each thread holds one Argon2 memory block (19 MiB) while it has
//! work and gives it back to the operating system when its queue runs dry, so after a
//! burst the process returns to its size before it.
//!
//! Why not `spawn_blocking` and `Argon2::verify_password`: each call allocates and frees
//! 19 MiB on whichever blocking-pool thread runs it. glibc serves that from the thread's
//! own malloc arena once its dynamic mmap threshold has risen past 19 MiB (the first such
//! free raises it), and an arena keeps what was freed: 120 failed logins took the server
//! from 14 MB to 1.28 GB, held for good, although a semaphore let only four run at once
//! (the pool had made fourteen threads, each with its own arena). Here the threads are
//! few and fixed, each reuses its block (`hash_password_into_with_memory`), and the block
//! is allocated with at least [`ALWAYS_MAPPED`] bytes of capacity: glibc never raises its
//! mmap threshold past 32 MiB, so an allocation that large is always its own `mmap` and
//! freeing it always unmaps it (musl maps every large allocation anyway). That needs no
//! `malloc_trim` (glibc only, and `unsafe`); the capacity past 19 MiB is address space
//! that is never touched, not memory.
//!
//! A waiting request whose client went away is skipped, not hashed.

use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};

use arena_protocol::ErrorCode;
use argon2::password_hash::phc::{Output, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Bytes of address space a thread's memory block is allocated with: above glibc's
/// largest dynamic mmap threshold (32 MiB on 64-bit), so it is always mapped on its own
/// and returned to the operating system when freed.
const ALWAYS_MAPPED: usize = 33 * 1024 * 1024;

/// Bytes of salt in a new hash (the PHC recommendation).
const SALT_BYTES: usize = 16;

/// A hashing thread's work: it gets the thread's reusable memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

#[derive(Clone)]
pub struct Passwords {
    queue: SyncSender<Job>,
}

impl Passwords {
    /// Start `threads` hashing threads (at least one) with room for `queue` waiting
    /// hashes. The threads end when the last `Passwords` clone is dropped.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Passwords> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || hashing_thread(&receiver))?;
        }
        Ok(Passwords { queue: sender })
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_string();
        let salt = crate::ids::random_bytes(SALT_BYTES);
        self.run(move |memory| {
            let salt =
                Salt::new(&salt).map_err(|e| Error::internal(format!("password salt: {e}")))?;
            let params = Params::default();
            let output = memory.hash(&params, password.as_bytes(), salt.as_ref())?;
            let params = (&params)
                .try_into()
                .map_err(|e| Error::internal(format!("password hash parameters: {e}")))?;
            Ok(PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::default().into()),
                params,
                salt: Some(salt),
                hash: Some(output),
            }
            .to_string())
        })
        .await
    }

    /// Whether `password` matches `hash`. With `hash` = `None` (no such user) it checks
    /// against a fixed dummy hash, so the answer takes as long either way.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
        let password = password.to_string();
        let real = hash.is_some();
        let matched = self
            .run(move |memory| {
                // The dummy hash is made on first use: here, on a hashing thread, like
                // every other hash, never on an async worker.
                let hash = match &hash {
                    Some(hash) => hash.as_str(),
                    None => dummy_hash(memory),
                };
                memory.verify(password.as_bytes(), hash)
            })
            .await?;
        Ok(real && matched)
    }

    /// Queue `work` for a hashing thread and wait for its answer; a full queue is 503.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // The client gave up while this waited (its request was dropped): skip it.
            if answer.is_closed() {
                return;
            }
            let _ = answer.send(work(memory));
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    "too many password checks are waiting; retry shortly",
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::internal("the password hashing threads are gone"))
            }
        }
        answered
            .await
            .map_err(|_| Error::internal("a password hashing thread failed"))?
    }
}

/// One hashing thread: take jobs in order; keep the memory block while there is work,
/// give it back before waiting for more.
fn hashing_thread(receiver: &Mutex<Receiver<Job>>) {
    let mut memory = Memory::default();
    loop {
        // A job at once if there is one. The lock is held only to take a job, except by
        // the one thread waiting on an empty queue: finding it taken also means "no job
        // now", and the memory must not be held through that wait either.
        let ready = match receiver.try_lock() {
            Ok(receiver) => match receiver.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            },
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Poisoned(_)) => return,
        };
        let job = match ready {
            Some(job) => job,
            None => {
                memory.release();
                let Ok(receiver) = receiver.lock() else {
                    return;
                };
                match receiver.recv() {
                    Ok(job) => job,
                    Err(_) => return, // every sender is gone: the server is stopping
                }
            }
        };
        // A job that panics fails its own request (its answer is dropped: a 500), not
        // the thread: a dead thread would shrink the pool for good.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory))).is_err() {
            memory = Memory::default();
        }
    }
}

/// A hashing thread's Argon2 memory, reused from one hash to the next.
#[derive(Default)]
struct Memory {
    blocks: Vec<Block>,
}

impl Memory {
    /// The blocks `params` needs: the thread's block, (re)allocated to that size.
    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let count = params.block_count();
        if self.blocks.len() != count {
            self.release();
            let capacity = count.max(ALWAYS_MAPPED / Block::SIZE);
            let mut blocks = Vec::new();
            if blocks.try_reserve_exact(capacity).is_ok() {
                blocks.resize(count, Block::default());
            }
            self.blocks = blocks;
        }
        &mut self.blocks
    }

    fn release(&mut self) {
        self.blocks = Vec::new();
    }

    fn hash(&mut self, params: &Params, password: &[u8], salt: &[u8]) -> Result<Output> {
        let mut out = [0u8; Output::MAX_LENGTH];
        let out = out
            .get_mut(..params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN))
            .ok_or_else(|| Error::internal("password hash output too long"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::default(), params.clone());
        let blocks = self.blocks(params);
        if blocks.len() != params.block_count() {
            return Err(Error::internal("no memory for a password hash"));
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, blocks)
            .map_err(|e| Error::internal(format!("hashing a password: {e}")))?;
        Output::new(out).map_err(|e| Error::internal(format!("password hash output: {e}")))
    }

    /// Whether `password` hashes to the stored PHC string `hash` (with the algorithm,
    /// version and parameters written in it), compared in constant time.
    fn verify(&mut self, password: &[u8], hash: &str) -> Result<bool> {
        let unreadable =
            |e: &dyn std::fmt::Display| Error::internal(format!("a stored password hash: {e}"));
        let stored = PasswordHash::new(hash).map_err(|e| unreadable(&e))?;
        let algorithm =
            Algorithm::try_from(stored.algorithm.as_ref()).map_err(|e| unreadable(&e))?;
        let params = Params::try_from(&stored).map_err(|e| unreadable(&e))?;
        let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
            return Err(unreadable(&"no salt or no output"));
        };
        let version = match stored.version {
            Some(v) => Version::try_from(v).map_err(|e| unreadable(&e))?,
            None => Version::default(),
        };
        if algorithm != Algorithm::Argon2id || version != Version::default() {
            return Err(unreadable(&"not an Argon2id v19 hash"));
        }
        let output = self.hash(&params, password, salt.as_ref())?;
        // `Output`'s equality is constant-time.
        Ok(output == *expected)
    }
}

fn dummy_hash(memory: &mut Memory) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = [0x5au8; SALT_BYTES];
        let params = Params::default();
        memory
            .hash(&params, b"arena-dummy-password-for-timing", &salt)
            .ok()
            .and_then(|output| {
                Some(
                    PasswordHash {
                        algorithm: Algorithm::Argon2id.ident(),
                        version: Some(Version::default().into()),
                        params: (&params).try_into().ok()?,
                        salt: Some(Salt::new(&salt).ok()?),
                        hash: Some(output),
                    }
                    .to_string(),
                )
            })
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new(2, 4).unwrap();
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse", Some(h.clone())).await.unwrap());
        assert!(!p.verify("wrong horse", Some(h)).await.unwrap());
        assert!(!p.verify("correct horse", None).await.unwrap());
    }

    /// Hashes written by earlier versions (the argon2 crate's own `hash_password`) still
    /// verify, and ours verify with the crate's verifier: the format is the same.
    #[tokio::test]
    async fn hashes_are_interchangeable_with_the_argon2_crate() {
        let p = Passwords::new(1, 4).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"old password")
            .unwrap()
            .to_string();
        assert!(p
            .verify("old password", Some(theirs.clone()))
            .await
            .unwrap());
        assert!(!p.verify("other", Some(theirs)).await.unwrap());
        let ours = p.hash("new password").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        use argon2::PasswordVerifier;
        assert!(Argon2::default()
            .verify_password(b"new password", &parsed)
            .is_ok());
    }

    #[tokio::test]
    async fn a_panicking_hash_fails_its_request_not_the_thread() {
        let p = Passwords::new(1, 4).unwrap();
        let failed = p
            .run(|_| -> Result<()> { panic!("a hash that panics") })
            .await
            .unwrap_err();
        assert_eq!(failed.code(), ErrorCode::Internal);
        assert!(!p.verify("x", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_with_unavailable() {
        // One thread and room for one more: while it works and one waits, a third hash
        // is refused.
        let p = Passwords::new(1, 1).unwrap();
        let (started, started_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let p = p.clone();
            tokio::spawn(async move {
                p.run(move |_| {
                    started.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        p.queue.try_send(Box::new(|_| {})).ok().unwrap();
        let refused = p.verify("x", None).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Unavailable);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
    }
}
