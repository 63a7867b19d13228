//! Sign-up input, validated at the edge: a `NewUser` is well-formed by construction.

use serde::Deserialize;
use shop_common::{
    config::{ExposeSecret, SecretString},
    domain::Username,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Email(String);
shop_common::string_newtype!(Email);

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let value = value.trim().to_owned();
        let valid = value.len() <= 254
            && !value.chars().any(char::is_whitespace)
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.split('.').count() >= 2
                    && domain.split('.').all(|part| !part.is_empty())
            });
        if valid {
            Ok(Self(value))
        } else {
            Err("must be an email address like name@example.com".into())
        }
    }
}

/// 8 to 128 characters; kept out of logs like every secret.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Password(SecretString);

impl ExposeSecret<str> for Password {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl TryFrom<String> for Password {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if (8..=128).contains(&value.chars().count()) {
            Ok(Self(value.into()))
        } else {
            Err("must be 8 to 128 characters".into())
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"username": "alice", "password": "secret-pass-1", "email": "alice@example.com"}))]
pub struct NewUser {
    pub username: Username,
    /// 8 to 128 characters.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    pub password: Password,
    #[schema(value_type = String, format = Email, max_length = 254, example = "alice@example.com")]
    pub email: Email,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.com"] {
            assert!(Email::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@b..c"] {
            assert!(Email::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::try_from("12345678".to_string()).is_ok());
        assert!(Password::try_from("1234567".to_string()).is_err());
    }
}
