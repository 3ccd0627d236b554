//! HTTP Basic authentication as PeerDB does it: an empty user name and the
//! PeerDB password, `Authorization: Basic base64(":" + password)`.
//!
//! The comparison is of SHA-256 digests with `subtle`'s constant-time
//! equality: the time it takes depends on neither the password's content
//! nor its length (the digest is always 32 bytes), only on the length of
//! the guess, which the caller already knows.

use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::{alphabet, Engine};
use lambda_http::http::header::{HeaderMap, AUTHORIZATION};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Standard alphabet, with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What requests must present. Built once per execution environment.
#[derive(Clone)]
pub enum Authenticator {
    /// The digest of `":" + password`, the decoded credentials to expect.
    Password([u8; 32]),
    /// Authentication switched off explicitly (authorization is done by API
    /// Gateway in front of the function).
    Disabled,
    /// No password and no explicit opt-out: fail closed.
    NotConfigured,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Authenticator::Password(_) => "Authenticator::Password(<redacted>)",
            Authenticator::Disabled => "Authenticator::Disabled",
            Authenticator::NotConfigured => "Authenticator::NotConfigured",
        })
    }
}

impl Authenticator {
    pub fn password(password: &str) -> Self {
        Authenticator::Password(credentials_digest(format!(":{password}").as_bytes()))
    }

    /// Decides whether the request may go on. Reads only headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self {
            Authenticator::Disabled => Ok(()),
            Authenticator::NotConfigured => Err(ApiError::Internal(
                "the function is not configured: no API password is set",
            )),
            Authenticator::Password(expected) => {
                let presented =
                    single_basic_credentials(headers).ok_or(ApiError::Unauthenticated)?;
                let matches: bool = credentials_digest(&presented).ct_eq(expected).into();
                if matches {
                    Ok(())
                } else {
                    Err(ApiError::Unauthenticated)
                }
            }
        }
    }
}

fn credentials_digest(credentials: &[u8]) -> [u8; 32] {
    Sha256::digest(credentials).into()
}

/// The decoded `user:password` bytes of the only `Authorization` header,
/// when it is a well-formed Basic one. Two headers are refused rather than
/// guessed between.
fn single_basic_credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    BASE64.decode(token.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn check(values: &[&str]) -> Result<(), ApiError> {
        Authenticator::password("peerdb").check(&headers(values))
    }

    #[test]
    fn accepts_the_documented_header() {
        assert_eq!(check(&["Basic OnBlZXJkYg=="]), Ok(()));
    }

    #[test]
    fn scheme_is_case_insensitive_and_padding_optional() {
        assert_eq!(check(&["basic OnBlZXJkYg"]), Ok(()));
        assert_eq!(check(&["BASIC  OnBlZXJkYg=="]), Ok(()));
    }

    #[test]
    fn refuses_everything_but_colon_and_the_exact_password() {
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
            assert_eq!(check(&[header]), Err(ApiError::Unauthenticated), "{header}");
        }
        assert_eq!(check(&[]), Err(ApiError::Unauthenticated));
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        assert_eq!(
            check(&["Basic OnBlZXJkYg==", "Basic OnBlZXJkYg=="]),
            Err(ApiError::Unauthenticated)
        );
    }

    #[test]
    fn fails_closed_without_a_password() {
        let err = Authenticator::NotConfigured.check(&headers(&["Basic OnBlZXJkYg=="]));
        assert_eq!(err.unwrap_err().code(), 13);
        assert_eq!(Authenticator::Disabled.check(&headers(&[])), Ok(()));
    }

    #[test]
    fn debug_never_shows_the_digest() {
        assert_eq!(
            format!("{:?}", Authenticator::password("peerdb")),
            "Authenticator::Password(<redacted>)"
        );
    }
}
