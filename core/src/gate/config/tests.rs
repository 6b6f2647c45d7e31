//! The settings table's rules: required keys, refused values naming their variable, defaults.

use super::*;

const REQUIRED: [(&str, &str); 4] = [
    (vars::LINK_KEYS, "1:b2xkLWtleS0wMTIzNDU2Nzg5"),
    (vars::USER_TOKEN_KEY, "shop-session-key-0123456789abcdef"),
    (vars::ORIGIN_KEY, "origin-key-0123456789abcdef"),
    (vars::ORIGIN_URL, "https://origin.example.com/"),
];

/// The required variables, with `extra` added or overriding them.
fn lookup(extra: &[(&str, &str)]) -> Result<GateConfig, ConfigError> {
    GateConfig::from_lookup(|name| {
        extra
            .iter()
            .chain(&REQUIRED)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

#[test]
fn every_setting_in_the_table_is_applied() {
    let config = lookup(&[
        (vars::LIMIT_SKU, "7/s burst 9"),
        (vars::LIMIT_PLACE, "1/s burst 1"),
        (vars::BOT_CHALLENGE_AT, " 40 "),
        (vars::POW_CALM_RATE, "123"),
        (vars::MAX_BODY, "100"),
        (vars::BREAKER_COOLDOWN_MS, "777"),
        (vars::SALE_MEMORY_MS, "1"),
        (vars::SALE_DIRECTORY_REFRESH_MS, "250"),
        (vars::QUEUE_REFRESH_MS, "2000"),
        (vars::QUEUE_JOIN_BATCH_MS, "300"),
    ])
    .unwrap();
    assert_eq!(config.limits.sku, "7/s burst 9".parse().unwrap());
    assert_eq!(config.limits.place, "1/s burst 1".parse().unwrap());
    assert_eq!(config.bot.challenge_at, 40);
    assert_eq!(config.difficulty.calm_rate_per_s, 123);
    assert_eq!(config.max_body, 100);
    assert_eq!(config.breaker.cooldown_ms, 777);
    assert_eq!(config.sale_memory_ms, 1);
    assert_eq!(config.directory_refresh_ms, 250);
    assert_eq!(config.queue_refresh_ms, 2_000);
    assert_eq!(config.queue_join_batch_ms, 300);
    assert_eq!(config.origin.url("/x"), "https://origin.example.com/x");
    // Untouched settings keep their defaults.
    assert_eq!(config.link_ttl_ms, 60_000);
    assert_eq!(config.challenge_ttl_ms, 60_000);
    assert_eq!(config.limits.ip, Limits::default().ip);
}

#[test]
fn the_table_names_each_setting_once() {
    let mut names: Vec<&str> = SETTINGS.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SETTINGS.len());
}

/// Every duration setting of the table, so a new one cannot escape the rule below.
const DURATIONS: [&str; 9] = [
    vars::LINK_TTL_MS,
    vars::CHALLENGE_TTL_MS,
    vars::BREAKER_COOLDOWN_MS,
    vars::ORIGIN_TIMEOUT_MS,
    vars::PLATFORM_LIMIT_WINDOW_MS,
    vars::SALE_MEMORY_MS,
    vars::SALE_DIRECTORY_REFRESH_MS,
    vars::QUEUE_REFRESH_MS,
    vars::QUEUE_JOIN_BATCH_MS,
];

#[test]
fn the_duration_list_is_every_ms_setting() {
    let ms: Vec<&str> = SETTINGS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| name.ends_with("_MS"))
        .collect();
    assert_eq!(ms, DURATIONS);
}

#[test]
fn a_zero_duration_setting_is_refused() {
    for value in ["0", "-1", " -60000 "] {
        for name in DURATIONS {
            let err = lookup(&[(name, value)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name: n, .. } if *n == name),
                "{name}={value}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(name) && text.contains("must be positive"),
                "{text}"
            );
        }
    }
    // One millisecond is a duration.
    for name in DURATIONS {
        assert!(lookup(&[(name, "1")]).is_ok(), "{name}");
    }
}

#[test]
fn the_origin_url_is_required_and_validated() {
    let without = lookup(&[(vars::ORIGIN_URL, "")]);
    assert_eq!(without.unwrap_err(), ConfigError::Missing(vars::ORIGIN_URL));
    let bad = lookup(&[(vars::ORIGIN_URL, "ftp://origin")]);
    assert!(matches!(
        bad,
        Err(ConfigError::Invalid {
            name: vars::ORIGIN_URL,
            ..
        })
    ));
}

#[test]
fn a_plain_http_origin_is_refused_unless_loopback() {
    let err = lookup(&[(vars::ORIGIN_URL, "http://origin.example.com")]).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                name: vars::ORIGIN_URL,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(vars::ORIGIN_URL) && text.contains("https://"),
        "{text}"
    );
    for local in [
        "http://127.0.0.1:50051",
        "http://[::1]:50051",
        "http://localhost:50051",
    ] {
        let config = lookup(&[(vars::ORIGIN_URL, local)]).unwrap();
        assert!(!config.origin.is_https(), "{local}");
    }
}

#[test]
fn an_unparsable_setting_names_itself() {
    let err = lookup(&[(vars::POW_CAP_BITS, "many")]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            name: vars::POW_CAP_BITS,
            ..
        }
    ));
    // An empty proof-of-work ring keeps the link ring, as before.
    let config = lookup(&[(vars::POW_KEYS, "")]).unwrap();
    assert_eq!(config.pow_keys.signing_id(), config.link_keys.signing_id());
}

#[test]
fn user_token_settings_are_applied() {
    let config = lookup(&[
        (vars::USER_TOKEN_AUDIENCE, " shop-api "),
        (vars::USER_TOKEN_ISSUER, "https://shop.example"),
        (vars::USER_TOKEN_MAX_LIFETIME_S, "3600"),
    ])
    .unwrap();
    let policy = config.identity.policy();
    assert_eq!(policy.audience.as_deref(), Some("shop-api"));
    assert_eq!(policy.issuer.as_deref(), Some("https://shop.example"));
    assert_eq!(policy.max_lifetime_s, 3600);
    assert_eq!(policy.leeway_ms, config.token_leeway_ms);
    // Unset (or empty): no audience or issuer is required, tokens live at most 7 days.
    let config = lookup(&[(vars::USER_TOKEN_AUDIENCE, "")]).unwrap();
    let policy = config.identity.policy();
    assert_eq!(
        (policy.audience.as_ref(), policy.issuer.as_ref()),
        (None, None)
    );
    assert_eq!(policy.max_lifetime_s, 7 * 24 * 3600);
    assert!(!config.identity.demo_mode());
    for bad in ["0", "-5", "a week"] {
        let err = lookup(&[(vars::USER_TOKEN_MAX_LIFETIME_S, bad)]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: vars::USER_TOKEN_MAX_LIFETIME_S,
                    ..
                }
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_short_user_token_key_is_refused_naming_the_setting() {
    let err = lookup(&[(vars::USER_TOKEN_KEY, "thirty-one-bytes-is-not-enough!")]).unwrap_err();
    assert!(
        matches!(
            &err,
            ConfigError::Invalid {
                name: vars::USER_TOKEN_KEY,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with(vars::USER_TOKEN_KEY), "{err}");
    // base64url("a-key-of-only-twenty-six-b") and base64url("shop-session-key-0123456789abcdef")
    let ring =
        "new:YS1rZXktb2Ytb25seS10d2VudHktc2l4LWI,old:c2hvcC1zZXNzaW9uLWtleS0wMTIzNDU2Nzg5YWJjZGVm";
    let err = lookup(&[(vars::USER_TOKEN_KEY, ""), (vars::USER_TOKEN_KEYS, ring)]).unwrap_err();
    assert!(
        matches!(
            &err,
            ConfigError::Invalid {
                name: vars::USER_TOKEN_KEYS,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("key `new` is shorter than 32 bytes"),
        "{err}"
    );
}

#[test]
fn user_token_keys_come_from_one_key_or_a_ring_never_both() {
    let ring = "k2:c2hvcC1zZXNzaW9uLWtleS0wMTIzNDU2Nzg5YWJjZGVm";
    let config = lookup(&[(vars::USER_TOKEN_KEY, ""), (vars::USER_TOKEN_KEYS, ring)]).unwrap();
    // The ring's primary signs, naming its kid; the one-key form verifies the same key
    // only for tokens that name no kid.
    let token = config.identity.mint("alice", 1_000_000, 60_000);
    let single = lookup(&[]).unwrap();
    assert!(matches!(
        config.identity.verify(Some(&token), 1_000_000),
        crate::identity::IdentityVerdict::Valid(_)
    ));
    assert_eq!(
        single.identity.verify(Some(&token), 1_000_000),
        crate::identity::IdentityVerdict::UnknownKey
    );
    let both = lookup(&[(vars::USER_TOKEN_KEYS, ring)]).unwrap_err();
    assert!(
        matches!(
            &both,
            ConfigError::Invalid {
                name: vars::USER_TOKEN_KEYS,
                ..
            }
        ),
        "{both}"
    );
    let neither = lookup(&[(vars::USER_TOKEN_KEY, "")]).unwrap_err();
    assert_eq!(neither, ConfigError::Missing(vars::USER_TOKEN_KEY));
    let malformed = lookup(&[(vars::USER_TOKEN_KEY, ""), (vars::USER_TOKEN_KEYS, "k2")]);
    assert!(matches!(
        malformed,
        Err(ConfigError::Invalid {
            name: vars::USER_TOKEN_KEYS,
            ..
        })
    ));
}
