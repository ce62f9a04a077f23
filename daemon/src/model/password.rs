//! The trust password's stored form: scrypt with a fresh salt and its cost beside the digest.
//! Pure (the salt comes from the caller or `getrandom`), so it is tested without a database.

use sha2::{Digest, Sha256};

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// No random bytes for the salt.
    #[error("getrandom for the salt of core.trust_password: {0}")]
    Random(String),
    /// scrypt refused its parameters (never with silo's own).
    #[error("scrypt for core.trust_password failed")]
    Scrypt,
}

/// scrypt's cost as LXD sets it for its trust password (N = 2^14, r = 8, p = 1): about 16 MiB
/// and tens of milliseconds per guess, where one sha256 would allow billions a second to
/// anyone holding a copy of the database.
const SCRYPT_LOG_N: u8 = 14;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SCRYPT_LEN: usize = 32;

fn scrypt_digest(
    salt: &[u8],
    password: &str,
    log_n: u8,
    r: u32,
    p: u32,
) -> Option<[u8; SCRYPT_LEN]> {
    let params = scrypt::Params::new(log_n, r, p, SCRYPT_LEN).ok()?;
    let mut out = [0u8; SCRYPT_LEN];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out).ok()?;
    Some(out)
}

fn sha256_digest(salt: &[u8], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// [`hash_password`] with a given salt.
pub fn hash_with_salt(salt: &[u8], password: &str) -> Result<String, PasswordError> {
    let digest = scrypt_digest(salt, password, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
        .ok_or(PasswordError::Scrypt)?;
    Ok(format!(
        "scrypt${SCRYPT_LOG_N}${SCRYPT_R}${SCRYPT_P}${}${}",
        hex::encode(salt),
        hex::encode(digest)
    ))
}

/// The trust password's stored form, `scrypt$<log2 N>$<r>$<p>$<salt hex>$<digest hex>`, with a
/// fresh 16-byte salt: the database (and its backups) never hold the clear text, two servers
/// with the same password store different values, and the cost is written beside the digest
/// so that raising it later still verifies what is stored.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    silo_proto::random::fill(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
    hash_with_salt(&salt, password)
}

/// Whether `password` is the one [`hash_password`] stored as `stored`. The `sha256$<salt>$<digest>`
/// form an earlier silod stored is still verified, so upgrading keeps a set password.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let (want, got) = match parts.as_slice() {
        ["scrypt", log_n, r, p, salt, digest] => {
            let (Ok(log_n), Ok(r), Ok(p), Ok(salt), Ok(want)) = (
                log_n.parse::<u8>(),
                r.parse::<u32>(),
                p.parse::<u32>(),
                hex::decode(salt),
                hex::decode(digest),
            ) else {
                return false;
            };
            // A stored cost is bounded so that a tampered row cannot make one check take
            // minutes or gigabytes.
            if log_n > 20 || r > 32 || p > 4 {
                return false;
            }
            match scrypt_digest(&salt, password, log_n, r, p) {
                Some(got) => (want, got.to_vec()),
                None => return false,
            }
        }
        ["sha256", salt, digest] => {
            let (Ok(salt), Ok(want)) = (hex::decode(salt), hex::decode(digest)) else {
                return false;
            };
            (want, sha256_digest(&salt, password).to_vec())
        }
        _ => return false,
    };
    // Constant time: how many leading bytes match must not show in the answer's timing.
    want.len() == got.len()
        && want
            .iter()
            .zip(got.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_is_salted_and_verifies() {
        let a = hash_password("s3cret").expect("hash");
        let b = hash_password("s3cret").expect("hash");
        assert_ne!(a, b, "a fresh salt each time");
        for h in [&a, &b] {
            assert!(!h.contains("s3cret"));
            let parts: Vec<&str> = h.split('$').collect();
            assert_eq!(parts[..4], ["scrypt", "14", "8", "1"], "{h}");
            assert_eq!(parts[4].len(), 32, "16-byte salt: {h}");
            assert_eq!(parts[5].len(), 64, "32-byte digest: {h}");
            assert!(verify_password(h, "s3cret"));
            assert!(!verify_password(h, "s3cret "));
            assert!(!verify_password(h, ""));
        }
        // RFC 7914's scrypt test vector (N = 1024, r = 8, p = 16), first 32 bytes.
        assert_eq!(
            hex::encode(scrypt_digest(b"NaCl", "password", 10, 8, 16).expect("scrypt")),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        );
        let salt = [7u8; 16];
        let stored = hash_with_salt(&salt, "pw").expect("hash");
        let want = hex::encode(scrypt_digest(&salt, "pw", 14, 8, 1).expect("scrypt"));
        assert_eq!(
            stored,
            format!("scrypt$14$8$1${}${want}", hex::encode(salt))
        );
        // The cost is read from the row: a lower one still verifies, a huge one is refused
        // rather than computed.
        let cheap = hex::encode(scrypt_digest(&salt, "pw", 4, 1, 1).expect("scrypt"));
        assert!(verify_password(
            &format!("scrypt$4$1$1${}${cheap}", hex::encode(salt)),
            "pw"
        ));
        assert!(!verify_password(
            &format!("scrypt$30$8$1${}${want}", hex::encode(salt)),
            "pw"
        ));
        // An earlier silod's sha256(salt ‖ password) still verifies.
        let legacy = hex::encode(Sha256::digest([&salt[..], b"pw"].concat()));
        let legacy = format!("sha256${}${legacy}", hex::encode(salt));
        assert!(verify_password(&legacy, "pw"));
        assert!(!verify_password(&legacy, "pW"));
        for broken in [
            "",
            "s3cret",
            "sha256$zz$00",
            "md5$00$00",
            "scrypt$14$8$1$zz$00",
            "scrypt$x$8$1$00$00",
            &format!("{a}$x"),
        ] {
            assert!(!verify_password(broken, "s3cret"), "{broken}");
        }
    }
}
