//! argon2id password hashing (OWASP minimum: 19 MiB, 2 iterations, 1 lane).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use p2pchat_core::Credentials;

/// Stores argon2id PHC strings; never the password.
pub struct Argon2Credentials {
    argon: Argon2<'static>,
}

impl Default for Argon2Credentials {
    fn default() -> Self {
        // 19 MiB, 2 passes, 1 lane: the OWASP floor for argon2id.
        let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
        Argon2Credentials {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        }
    }
}

impl Credentials for Argon2Credentials {
    fn hash(&mut self, password: &str) -> String {
        let mut bytes = [0u8; 16];
        if rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes).is_err() {
            return String::new();
        }
        let salt = match SaltString::encode_b64(&bytes) {
            Ok(s) => s,
            Err(_) => return String::new(),
        };
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            // An empty verifier matches no password: the account is unusable, not open.
            .unwrap_or_default()
    }

    fn verify(&self, password: &str, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(parsed) => self
                .argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify_only_the_right_password() {
        let mut c = Argon2Credentials::default();
        let h = c.hash("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(c.verify("correct horse", &h));
        assert!(!c.verify("wrong", &h));
        assert!(!c.verify("correct horse", "garbage"));
        assert_ne!(h, c.hash("correct horse"), "salts differ");
    }
}
