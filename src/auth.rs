//! Who may call: decided from the headers alone, before the body is read
//! and before the catalog is touched.
//!
//! Either way in that is configured lets a request in: HTTP Basic, or a
//! bearer token from the configured issuer (`bearer`).
//!
//! HTTP Basic as PeerDB does it: an empty user name and the PeerDB
//! password, `Authorization: Basic base64(":" + password)`. The comparison
//! is of SHA-256 digests with `subtle`'s constant-time equality: the time
//! it takes depends on neither the password's content nor its length (the
//! digest is always 32 bytes), only on the length of the guess, which the
//! caller already knows.

use std::time::Instant;

use axum::http::header::{HeaderMap, AUTHORIZATION};
use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::{alphabet, Engine};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{error, warn};

use crate::bearer::{self, Bearer, Refusal};
use crate::error::{describe, ApiError, Challenges};
use crate::secrets::{PasswordSecret, RETRY_INTERVAL};

/// Standard alphabet, with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What requests must present. Built once per execution environment.
pub enum Auth {
    /// Requests must present one of these.
    Required(Vec<WayIn>),
    /// Switched off explicitly: API Gateway authorizes callers.
    Disabled,
    /// No way in configured and no explicit opt-out: fail closed.
    NotConfigured,
}

/// One accepted way in.
pub enum WayIn {
    /// A password fixed for the execution environment's life.
    Password(Password),
    /// The password kept in Secrets Manager, re-read as it rotates.
    PasswordSecret(RotatingPassword),
    /// Bearer tokens from the configured issuer (`PEERDB_OAUTH_*`).
    Bearer(Box<Bearer>),
}

impl Auth {
    /// Decides whether the request may go on. Reads only headers.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let ways = match self {
            Auth::Disabled => return Ok(()),
            Auth::NotConfigured => return Err(ApiError::NoPassword),
            Auth::Required(ways) => ways,
        };
        let refused = |refusal: Option<Refusal>| ApiError::Unauthenticated {
            challenges: Challenges {
                basic: ways.iter().any(|w| !matches!(w, WayIn::Bearer(_))),
                bearer: ways
                    .iter()
                    .any(|w| matches!(w, WayIn::Bearer(_)))
                    .then_some(refusal.is_some()),
            },
            refusal,
        };
        let value = authorization(headers).ok_or_else(|| refused(None))?;
        let mut refusal = None;
        for way in ways {
            let admitted = match way {
                WayIn::Password(password) => password.admits(value),
                WayIn::PasswordSecret(secret) => secret.admits(value).await,
                WayIn::Bearer(bearer) => match bearer::token_of(value) {
                    None => false,
                    Some(token) => match bearer.verify(token).await {
                        Ok(()) => true,
                        Err(Refusal::KeySetUnavailable) => return Err(ApiError::KeySetUnavailable),
                        Err(why) => {
                            refusal = Some(why);
                            false
                        }
                    },
                },
            };
            if admitted {
                return Ok(());
            }
        }
        Err(refused(refusal))
    }
}

/// The only `Authorization` header's value. Two headers are refused rather
/// than guessed between.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok().map(str::trim)
}

/// The digest of `":" + password`, the decoded credentials to expect.
#[derive(Clone)]
pub struct Password([u8; 32]);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn new(password: &str) -> Password {
        Password(digest(format!(":{password}").as_bytes()))
    }

    /// Whether an `Authorization` value carries this password, as Basic.
    pub fn admits(&self, authorization: &str) -> bool {
        basic_credentials(authorization)
            .is_some_and(|presented| digest(&presented).ct_eq(&self.0).into())
    }
}

fn digest(credentials: &[u8]) -> [u8; 32] {
    Sha256::digest(credentials).into()
}

/// The decoded `user:password` bytes of a well-formed Basic value.
fn basic_credentials(value: &str) -> Option<Vec<u8>> {
    let (scheme, token) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    BASE64.decode(token.trim()).ok()
}

/// The API password from `PEERDB_PASSWORD_SECRET_ID`. A rotated password
/// is accepted within [`RETRY_INTERVAL`] (a request presenting one that
/// does not match re-reads the secret), and the old one is refused once
/// the copy here is older than the secret's `max_age`.
pub struct RotatingPassword {
    secret: PasswordSecret,
    state: tokio::sync::Mutex<Copy>,
}

struct Copy {
    password: Password,
    read_at: Instant,
    /// The last re-read caused by a password that did not match.
    retried_at: Option<Instant>,
}

impl RotatingPassword {
    /// `password` is the secret's value as read at start.
    pub fn new(secret: PasswordSecret, password: &str) -> RotatingPassword {
        RotatingPassword {
            secret,
            state: tokio::sync::Mutex::new(Copy {
                password: Password::new(password),
                read_at: Instant::now(),
                retried_at: None,
            }),
        }
    }

    async fn admits(&self, authorization: &str) -> bool {
        let mut copy = self.state.lock().await;
        if copy.read_at.elapsed() >= self.secret.max_age {
            self.reread(&mut copy).await;
        }
        if copy.password.admits(authorization) {
            return true;
        }
        if copy
            .retried_at
            .is_some_and(|at| at.elapsed() < RETRY_INTERVAL)
        {
            return false;
        }
        copy.retried_at = Some(Instant::now());
        self.reread(&mut copy).await;
        copy.password.admits(authorization)
    }

    /// On failure the password read before stays in force.
    async fn reread(&self, copy: &mut Copy) {
        match self.secret.read().await {
            Ok(password) => copy.password = Password::new(&password),
            Err(e) => {
                let (secret, error) = (self.secret.id(), describe(&e));
                if matches!(e, crate::secrets::SecretsError::Content { .. }) {
                    error!(
                        secret,
                        error,
                        "the API password secret is unusable; keeping the password read before"
                    );
                } else {
                    warn!(
                        secret,
                        error, "cannot re-read the API password; keeping the one read before"
                    );
                }
            }
        }
        copy.read_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    async fn check(values: &[&str]) -> Result<(), ApiError> {
        Auth::Required(vec![WayIn::Password(Password::new("peerdb"))])
            .check(&headers(values))
            .await
    }

    #[tokio::test]
    async fn accepts_the_documented_header() {
        assert!(check(&["Basic OnBlZXJkYg=="]).await.is_ok());
    }

    #[tokio::test]
    async fn scheme_is_case_insensitive_and_padding_optional() {
        assert!(check(&["basic OnBlZXJkYg"]).await.is_ok());
        assert!(check(&["BASIC  OnBlZXJkYg=="]).await.is_ok());
    }

    #[tokio::test]
    async fn refuses_everything_but_colon_and_the_exact_password() {
        let wrong = [
            "Basic ".to_string(),
            "Basic".to_string(),
            "Bearer OnBlZXJkYg==".to_string(),
            format!("Basic {}", BASE64.encode("peerdb")),
            format!("Basic {}", BASE64.encode("user:peerdb")),
            format!("Basic {}", BASE64.encode(":peerdb ")),
            format!("Basic {}", BASE64.encode(":peerd")),
            format!("Basic {}", BASE64.encode(":PEERDB")),
            "Basic OnBlZXJkYg==garbage".to_string(),
            "Basic !!!!".to_string(),
        ];
        for header in &wrong {
            assert!(
                matches!(
                    check(&[header]).await,
                    Err(ApiError::Unauthenticated { .. })
                ),
                "{header}"
            );
        }
        assert!(matches!(
            check(&[]).await,
            Err(ApiError::Unauthenticated { .. })
        ));
    }

    #[tokio::test]
    async fn two_authorization_headers_are_refused() {
        assert!(matches!(
            check(&["Basic OnBlZXJkYg==", "Basic OnBlZXJkYg=="]).await,
            Err(ApiError::Unauthenticated { .. })
        ));
    }

    #[tokio::test]
    async fn fails_closed_without_a_password() {
        let err = Auth::NotConfigured
            .check(&headers(&["Basic OnBlZXJkYg=="]))
            .await;
        assert_eq!(err.unwrap_err().code(), 13);
        assert!(Auth::Disabled.check(&headers(&[])).await.is_ok());
    }

    #[test]
    fn debug_never_shows_the_digest() {
        assert_eq!(
            format!("{:?}", Password::new("peerdb")),
            "Password(<redacted>)"
        );
    }
}
