//! Signing keys: the keyring that signs access tokens and the keys that may verify them.
//!
//! Every token carries the `kid` of the key that signed it, and only a key in the ring
//! verifies it, with the algorithm *that key* was made for (so an HMAC token made with a
//! published Ed25519 key is refused). Where the ring lives ([`KeySource`]): a fixed
//! `--jwt-secret`; else, for servers sharing a database (`--database-url`), in that
//! database, one ring for the whole deployment (created by the first server to start,
//! importing its `signing-keys.json` if it has one); else in `<data>/signing-keys.json`
//! (mode 0600).
//!
//! Rotation: starting with `--rotate-signing-key`, or with a `--jwt-algorithm` different
//! from the current key's, adds a new current key and retires the old one. A retired key
//! keeps verifying until every token it could have signed has expired (access TTL plus
//! leeway after its retirement), then it is dropped. EdDSA public keys, current and
//! retired, are published at `GET /.well-known/jwks.json`. A shared ring is rotated and
//! pruned in the database's transaction that also logs `keys_changed`: every other server
//! then reloads it (`TokenKeys::reload`).

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use crate::ids;
use crate::store::{KeyRow, KeyringRows, Store};

/// The algorithms an operator may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum SigningAlgorithm {
    #[serde(rename = "HS256")]
    #[value(name = "HS256")]
    Hs256,
    #[serde(rename = "EdDSA")]
    #[value(name = "EdDSA")]
    EdDsa,
}

impl SigningAlgorithm {
    pub fn jwt(self) -> Algorithm {
        match self {
            SigningAlgorithm::Hs256 => Algorithm::HS256,
            SigningAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    /// The name as JWTs, the keyring file and the database spell it.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Hs256 => "HS256",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    fn from_name(name: &str) -> Option<SigningAlgorithm> {
        [SigningAlgorithm::Hs256, SigningAlgorithm::EdDsa]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// Where a ring came from, and so whether another server can change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `--jwt-secret`: fixed.
    Secret,
    /// `<data>/signing-keys.json`: this server's own.
    File,
    /// The shared database: any server may rotate it; the others reload it.
    Database,
}

/// HMAC secrets shorter than this are refused (RFC 7518 §3.2 for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

/// One key as stored in the keyring file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: SigningAlgorithm,
    /// HS256: the secret; EdDSA: the PKCS#8 private key. Standard base64.
    material: String,
    created_at: i64,
    retired_at: Option<i64>,
}

impl StoredKey {
    fn to_row(&self) -> KeyRow {
        KeyRow {
            kid: self.kid.clone(),
            alg: self.alg.name().to_string(),
            material: self.material.clone(),
            created_at_secs: self.created_at,
            retired_at_secs: self.retired_at,
        }
    }

    fn from_row(row: &KeyRow) -> Result<StoredKey, String> {
        Ok(StoredKey {
            kid: row.kid.clone(),
            alg: SigningAlgorithm::from_name(&row.alg)
                .ok_or_else(|| format!("key {}: unknown algorithm {:?}", row.kid, row.alg))?,
            material: row.material.clone(),
            created_at: row.created_at_secs,
            retired_at: row.retired_at_secs,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
    /// Derives each refresh token's successor (see `Auth::refresh`). Standard base64.
    #[serde(default)]
    chain_key: Option<String>,
}

/// A key that verifies tokens.
pub struct VerifyingKey {
    pub kid: String,
    pub alg: SigningAlgorithm,
    pub decoding: DecodingKey,
    /// The public JWK (EdDSA only).
    pub jwk: Option<serde_json::Value>,
    /// The first segment of every token this key signs (`{"typ","alg","kid"}`, encoded
    /// as the signer encodes it): a token whose header is these exact bytes needs no
    /// header parsing (see `tokens::TokenKeys::verify`).
    pub own_header: String,
    /// The HMAC key, set up once rather than per verification (HS256 only).
    pub hmac: Option<aws_lc_rs::hmac::Key>,
}

/// The header segment `jsonwebtoken::encode` writes for a key: base64url of the header's
/// JSON, serialized the same way.
fn own_header(alg: SigningAlgorithm, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(alg.jwt());
    header.kid = Some(kid.to_string());
    // Serializing a header of plain strings cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default())
}

/// The key that signs new tokens.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlgorithm,
    pub encoding: EncodingKey,
}

pub struct Keyring {
    pub signing: SigningKey,
    pub verifying: Vec<VerifyingKey>,
    /// The secret that derives a refresh token's successor from it. Shared with every
    /// server that verifies this ring's tokens, so a refresh retried on another server
    /// derives the same successor.
    pub chain_key: Arc<[u8]>,
    pub source: KeySource,
}

impl Keyring {
    /// A ring of one fixed HMAC secret (`--jwt-secret`); its kid is derived from the
    /// secret, so every server configured with it agrees.
    pub fn from_secret(secret: &[u8]) -> Result<Keyring, String> {
        check_secret(secret)?;
        let kid = format!("hs-{}", &ids::sha256_hex_bytes(secret)[..12]);
        let stored = StoredKey {
            kid,
            alg: SigningAlgorithm::Hs256,
            material: STANDARD.encode(secret),
            created_at: 0,
            retired_at: None,
        };
        let chain_key = ids::hmac_token(secret, "arena refresh chain").into_bytes();
        Keyring::from_stored(&[stored], chain_key, KeySource::Secret)
    }

    /// Load the ring from `path`, creating it, rotating it and pruning it as needed.
    pub fn load_or_create(
        path: &Path,
        alg: SigningAlgorithm,
        rotate: bool,
        retire_after_secs: i64,
    ) -> Result<Keyring, String> {
        let mut file = read_key_file(path)?.unwrap_or_default();
        let now = ids::now_secs();
        let before = file.keys.len();
        file.keys
            .retain(|k| k.retired_at.is_none_or(|r| r + retire_after_secs >= now));
        let mut changed = file.keys.len() != before;
        let current_alg = file
            .keys
            .iter()
            .rev()
            .find(|k| k.retired_at.is_none())
            .map(|k| k.alg);
        if needs_rotation(current_alg, alg, rotate) {
            for k in file.keys.iter_mut().filter(|k| k.retired_at.is_none()) {
                k.retired_at = Some(now);
            }
            file.keys.push(new_key(alg, now)?);
            changed = true;
        }
        if file.chain_key.is_none() {
            file.chain_key = Some(STANDARD.encode(ids::random_bytes(32)));
            changed = true;
        }
        if changed {
            write_private(path, &file)?;
        }
        let chain_key = file
            .chain_key
            .as_deref()
            .map(|k| STANDARD.decode(k))
            .transpose()
            .map_err(|e| format!("chain key: {e}"))?
            .unwrap_or_default();
        Keyring::from_stored(&file.keys, chain_key, KeySource::File)
    }

    /// Open the deployment's ring in the shared database at start: create it if there is
    /// none (from the keys of `file`, this server's keyring file, when it exists: tokens
    /// it signed keep verifying), then prune and rotate it by the same rules as the file,
    /// all under the database's lock. A rotation or a prune tells the other servers.
    pub async fn open_shared(
        store: &Store,
        file: &Path,
        alg: SigningAlgorithm,
        rotate: bool,
        retire_after_secs: i64,
    ) -> Result<Keyring, String> {
        let seed = read_key_file(file)?.unwrap_or_default();
        let seed = KeyringRows {
            keys: seed.keys.iter().map(StoredKey::to_row).collect(),
            chain_key: seed
                .chain_key
                .unwrap_or_else(|| STANDARD.encode(ids::random_bytes(32))),
        };
        let now = ids::now_secs();
        let opened = store
            .open_keyring(&seed, now - retire_after_secs, |keys| {
                // A key this version cannot read (a newer version wrote it) stops the
                // start here, before anything is written.
                let keys = keys
                    .iter()
                    .map(StoredKey::from_row)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(crate::error::Error::Internal)?;
                let current_alg = keys
                    .iter()
                    .rev()
                    .find(|k| k.retired_at.is_none())
                    .map(|k| k.alg);
                if !needs_rotation(current_alg, alg, rotate) {
                    return Ok(None);
                }
                new_key(alg, now)
                    .map(|k| Some(k.to_row()))
                    .map_err(crate::error::Error::Internal)
            })
            .await
            .map_err(|e| format!("opening the signing keyring in the database: {e}"))?;
        let ring = Keyring::from_rows(&opened.ring)?;
        tracing::info!(
            kid = %ring.signing.kid,
            created = opened.created,
            imported = if opened.created { seed.keys.len() } else { 0 },
            rotated = opened.rotated,
            pruned = opened.pruned,
            "signing keyring opened in the database"
        );
        Ok(ring)
    }

    /// The deployment's ring as the shared database holds it now.
    pub async fn load_shared(store: &Store) -> Result<Keyring, String> {
        let rows = store
            .keyring()
            .await
            .map_err(|e| format!("reading the signing keyring: {e}"))?
            .ok_or("the database holds no signing keyring")?;
        Keyring::from_rows(&rows)
    }

    fn from_rows(rows: &KeyringRows) -> Result<Keyring, String> {
        let keys = rows
            .keys
            .iter()
            .map(StoredKey::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let chain_key = STANDARD
            .decode(&rows.chain_key)
            .map_err(|e| format!("chain key: {e}"))?;
        Keyring::from_stored(&keys, chain_key, KeySource::Database)
    }

    fn from_stored(
        keys: &[StoredKey],
        chain_key: Vec<u8>,
        source: KeySource,
    ) -> Result<Keyring, String> {
        let current = keys
            .iter()
            .rev()
            .find(|k| k.retired_at.is_none())
            .ok_or("the keyring has no current key")?;
        let material = |k: &StoredKey| {
            STANDARD
                .decode(&k.material)
                .map_err(|e| format!("key {}: {e}", k.kid))
        };
        let mut verifying = Vec::with_capacity(keys.len());
        for k in keys {
            let bytes = material(k)?;
            verifying.push(match k.alg {
                SigningAlgorithm::Hs256 => VerifyingKey {
                    kid: k.kid.clone(),
                    alg: k.alg,
                    decoding: DecodingKey::from_secret(&bytes),
                    jwk: None,
                    own_header: own_header(k.alg, &k.kid),
                    hmac: Some(aws_lc_rs::hmac::Key::new(
                        aws_lc_rs::hmac::HMAC_SHA256,
                        &bytes,
                    )),
                },
                SigningAlgorithm::EdDsa => {
                    let pair = Ed25519KeyPair::from_pkcs8(&bytes)
                        .map_err(|e| format!("key {}: {e}", k.kid))?;
                    let public = pair.public_key().as_ref().to_vec();
                    VerifyingKey {
                        kid: k.kid.clone(),
                        alg: k.alg,
                        decoding: DecodingKey::from_ed_der(&public),
                        jwk: Some(serde_json::json!({
                            "kty": "OKP",
                            "crv": "Ed25519",
                            "x": URL_SAFE_NO_PAD.encode(&public),
                            "kid": k.kid,
                            "alg": "EdDSA",
                            "use": "sig",
                        })),
                        own_header: own_header(k.alg, &k.kid),
                        hmac: None,
                    }
                }
            });
        }
        let bytes = material(current)?;
        let encoding = match current.alg {
            SigningAlgorithm::Hs256 => EncodingKey::from_secret(&bytes),
            SigningAlgorithm::EdDsa => EncodingKey::from_ed_der(&bytes),
        };
        Ok(Keyring {
            signing: SigningKey {
                kid: current.kid.clone(),
                alg: current.alg,
                encoding,
            },
            verifying,
            chain_key: chain_key.into(),
            source,
        })
    }

    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying.iter().find(|k| k.kid == kid)
    }

    /// The JWKS document: every public key that may verify a live token.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .verifying
            .iter()
            .filter_map(|k| k.jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// A new current key is made when asked to rotate, when there is none, or when the
/// configured algorithm is not the current key's.
fn needs_rotation(
    current: Option<SigningAlgorithm>,
    wanted: SigningAlgorithm,
    rotate: bool,
) -> bool {
    rotate || current != Some(wanted)
}

/// The keyring file, or `None` when there is none.
fn read_key_file(path: &Path) -> Result<Option<KeyFile>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<KeyFile>(&text)
            .map(Some)
            .map_err(|e| format!("{} is not a valid keyring: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn check_secret(secret: &[u8]) -> Result<(), String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the HMAC secret must be at least {MIN_SECRET_BYTES} bytes (got {})",
            secret.len()
        ));
    }
    Ok(())
}

fn new_key(alg: SigningAlgorithm, now: i64) -> Result<StoredKey, String> {
    let material = match alg {
        SigningAlgorithm::Hs256 => ids::random_bytes(48),
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| format!("generating an Ed25519 key: {e}"))?
            .as_ref()
            .to_vec(),
    };
    Ok(StoredKey {
        kid: ids::random_token(9),
        alg,
        material: STANDARD.encode(material),
        created_at: now,
        retired_at: None,
    })
}

/// Write the keyring readable by its owner only, atomically (temp file, then rename).
fn write_private(path: &Path, file: &KeyFile) -> Result<(), String> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(file).map_err(|e| e.to_string())?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("arena-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("signing-keys.json")
    }

    #[test]
    fn creates_then_reuses() {
        let p = temp_path("reuse");
        let a = Keyring::load_or_create(&p, SigningAlgorithm::EdDsa, false, 100).unwrap();
        let b = Keyring::load_or_create(&p, SigningAlgorithm::EdDsa, false, 100).unwrap();
        assert_eq!(a.signing.kid, b.signing.kid);
        assert_eq!(b.verifying.len(), 1);
        assert_eq!(a.jwks()["keys"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn rotation_keeps_the_old_key_for_verifying() {
        let p = temp_path("rotate");
        let a = Keyring::load_or_create(&p, SigningAlgorithm::EdDsa, false, 100).unwrap();
        let b = Keyring::load_or_create(&p, SigningAlgorithm::EdDsa, true, 100).unwrap();
        assert_ne!(a.signing.kid, b.signing.kid);
        assert!(b.find(&a.signing.kid).is_some());
        // Retired longer ago than tokens live: dropped.
        let c = Keyring::load_or_create(&p, SigningAlgorithm::EdDsa, true, -1).unwrap();
        assert!(c.find(&a.signing.kid).is_none());
    }

    #[test]
    fn changing_algorithm_rotates() {
        let p = temp_path("alg");
        let a = Keyring::load_or_create(&p, SigningAlgorithm::Hs256, false, 100).unwrap();
        let b = Keyring::load_or_create(&p, SigningAlgorithm::EdDsa, false, 100).unwrap();
        assert_eq!(b.signing.alg, SigningAlgorithm::EdDsa);
        assert_eq!(
            b.find(&a.signing.kid).map(|k| k.alg),
            Some(SigningAlgorithm::Hs256)
        );
        // HMAC keys are never published.
        assert_eq!(b.jwks()["keys"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn short_secret_refused() {
        assert!(Keyring::from_secret(&[1u8; 31]).is_err());
        assert!(Keyring::from_secret(&[1u8; 32]).is_ok());
    }
}
