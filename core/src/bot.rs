//! Bot scoring: how automated a request looks, from facts the edge already has.
//!
//! A score from 0 (looks like a person's browser) to 100 (certainly automated) adds up signals:
//! an automation user agent (curl, python-requests, Go's http client, HeadlessChrome, wget, …)
//! or none at all, and the browser headers every current browser sends but scripts forget
//! (`Accept-Language`, `Sec-Fetch-Site`/`Sec-Fetch-Mode`). The platform's own bot score, where the
//! runtime gives one (Cloudflare's 1 = automated … 99 = human), can only raise the score. A client
//! address in a deny-listed network (CIDR, IPv4 or IPv6) is blocked outright. Thresholds from
//! config turn the score into [`BotVerdict::Allow`], [`BotVerdict::Challenge`] (harder
//! proof-of-work) or [`BotVerdict::Block`].
//!
//! What it deliberately does not do: fingerprint TLS or JavaScript, keep per-client history (rate
//! limits do that), or trust any header as proof of being human: a clean score only means the
//! request is not obviously a script.

use ipnet::IpNet;
use std::net::IpAddr;

/// The request facts bot scoring reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BotSignals<'a> {
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `Accept-Language`.
    pub accept_language: Option<&'a str>,
    /// `Sec-Fetch-Site`.
    pub sec_fetch_site: Option<&'a str>,
    /// `Sec-Fetch-Mode`.
    pub sec_fetch_mode: Option<&'a str>,
    /// The client's address as the platform saw it.
    pub client_ip: Option<IpAddr>,
    /// The platform's bot score, 1 (automated) to 99 (human), when it gives one.
    pub platform_score: Option<u8>,
}

/// What to do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotVerdict {
    /// Let it through.
    Allow,
    /// Let it through only with a harder proof-of-work.
    Challenge,
    /// Refuse it.
    Block,
}

/// The policy: deny lists and thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotPolicy {
    /// Networks whose requests are blocked.
    pub deny: Vec<IpNet>,
    /// Score from which a request must pass a harder challenge.
    pub challenge_at: u8,
    /// Score from which a request is blocked.
    pub block_at: u8,
}

impl Default for BotPolicy {
    fn default() -> Self {
        BotPolicy {
            deny: Vec::new(),
            challenge_at: 30,
            block_at: 80,
        }
    }
}

/// The score and the verdict it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    /// 0 (human-looking) to 100 (automated).
    pub score: u8,
    /// What the policy's thresholds make of it.
    pub verdict: BotVerdict,
}

/// User-agent fragments of HTTP libraries and headless browsers, lower case.
const AUTOMATION_AGENTS: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "okhttp",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "node-fetch",
    "axios/",
    "undici",
    "headlesschrome",
    "phantomjs",
    "selenium",
    "puppeteer",
    "playwright",
    "scrapy",
    "httpie",
    "postmanruntime",
    "insomnia",
    "k6/",
    "wrk",
    "bot",
    "spider",
    "crawler",
];

/// Why [`BotPolicy::parse_deny_list`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP network or address: {0:?}")]
pub struct BadNetwork(pub String);

impl BotPolicy {
    /// Parses a comma- or whitespace-separated list of networks (`10.0.0.0/8`, `2001:db8::/32`)
    /// or single addresses.
    pub fn parse_deny_list(text: &str) -> Result<Vec<IpNet>, BadNetwork> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| BadNetwork(s.to_owned()))
            })
            .collect()
    }

    /// Whether `ip` is in a denied network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn denied(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.deny.iter().any(|net| net.contains(&ip))
    }

    /// Scores a request and applies the thresholds.
    pub fn assess(&self, signals: &BotSignals<'_>) -> Assessment {
        if signals.client_ip.is_some_and(|ip| self.denied(ip)) {
            return Assessment {
                score: 100,
                verdict: BotVerdict::Block,
            };
        }
        let score = score(signals);
        let verdict = if score >= self.block_at {
            BotVerdict::Block
        } else if score >= self.challenge_at {
            BotVerdict::Challenge
        } else {
            BotVerdict::Allow
        };
        Assessment { score, verdict }
    }
}

/// The header-based score, 0..=100, with the platform score folded in.
pub fn score(signals: &BotSignals<'_>) -> u8 {
    let mut score: u32 = 0;
    match signals
        .user_agent
        .map(str::trim)
        .filter(|ua| !ua.is_empty())
    {
        None => score += 60,
        Some(ua) => {
            let ua = ua.to_ascii_lowercase();
            if AUTOMATION_AGENTS.iter().any(|needle| ua.contains(needle)) {
                score += 70;
            } else if !ua.starts_with("mozilla/") {
                // Every mainstream browser still opens with "Mozilla/5.0".
                score += 25;
            }
        }
    }
    if signals.accept_language.is_none_or(|v| v.trim().is_empty()) {
        score += 20;
    }
    if signals.sec_fetch_site.is_none() || signals.sec_fetch_mode.is_none() {
        score += 15;
    }
    let score = score.min(100) as u8;
    match signals.platform_score {
        // 1 = certainly automated → 99; 99 = human → 1. Zero means "not scored".
        Some(p @ 1..=99) => score.max(100 - p),
        _ => score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36";

    fn browser() -> BotSignals<'static> {
        BotSignals {
            user_agent: Some(CHROME),
            accept_language: Some("zh-CN,zh;q=0.9,en;q=0.8"),
            sec_fetch_site: Some("same-origin"),
            sec_fetch_mode: Some("cors"),
            client_ip: Some("203.0.113.9".parse().unwrap()),
            platform_score: None,
        }
    }

    #[test]
    fn a_browser_is_allowed() {
        let a = BotPolicy::default().assess(&browser());
        assert_eq!(
            a,
            Assessment {
                score: 0,
                verdict: BotVerdict::Allow
            }
        );
    }

    #[test]
    fn automation_agents_are_blocked_and_bare_requests_challenged_or_blocked() {
        let policy = BotPolicy::default();
        for ua in [
            "curl/8.5.0",
            "python-requests/2.32",
            "Go-http-client/1.1",
            "Wget/1.21",
            "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 Safari/537.36",
        ] {
            let bare = BotSignals {
                user_agent: Some(ua),
                ..Default::default()
            };
            assert_eq!(policy.assess(&bare).verdict, BotVerdict::Block, "{ua}");
            let dressed = BotSignals {
                user_agent: Some(ua),
                ..browser()
            };
            assert_eq!(
                policy.assess(&dressed).verdict,
                BotVerdict::Challenge,
                "{ua}"
            );
        }
        let no_headers = BotSignals {
            user_agent: Some(CHROME),
            ..Default::default()
        };
        assert_eq!(
            policy.assess(&no_headers),
            Assessment {
                score: 35,
                verdict: BotVerdict::Challenge
            }
        );
        assert_eq!(
            policy.assess(&BotSignals::default()).verdict,
            BotVerdict::Block
        );
    }

    #[test]
    fn the_platform_score_only_raises() {
        let policy = BotPolicy::default();
        let flagged = BotSignals {
            platform_score: Some(2),
            ..browser()
        };
        assert_eq!(
            policy.assess(&flagged),
            Assessment {
                score: 98,
                verdict: BotVerdict::Block
            }
        );
        let human = BotSignals {
            platform_score: Some(99),
            user_agent: Some("curl/8"),
            ..browser()
        };
        assert_eq!(policy.assess(&human).score, 70);
        let unscored = BotSignals {
            platform_score: Some(0),
            ..browser()
        };
        assert_eq!(policy.assess(&unscored).score, 0);
    }

    #[test]
    fn deny_lists_cover_ipv4_ipv6_and_mapped_addresses() {
        let deny = BotPolicy::parse_deny_list("198.51.100.0/24, 2001:db8::/32 192.0.2.7").unwrap();
        let policy = BotPolicy {
            deny,
            ..BotPolicy::default()
        };
        for ip in [
            "198.51.100.200",
            "2001:db8:1::5",
            "192.0.2.7",
            "::ffff:198.51.100.1",
        ] {
            let s = BotSignals {
                client_ip: Some(ip.parse().unwrap()),
                ..browser()
            };
            assert_eq!(policy.assess(&s).verdict, BotVerdict::Block, "{ip}");
        }
        for ip in ["198.51.101.1", "2001:db9::1", "192.0.2.8"] {
            let s = BotSignals {
                client_ip: Some(ip.parse().unwrap()),
                ..browser()
            };
            assert_eq!(policy.assess(&s).verdict, BotVerdict::Allow, "{ip}");
        }
        assert_eq!(
            BotPolicy::parse_deny_list("10.0.0.0/8,nonsense"),
            Err(BadNetwork("nonsense".into()))
        );
    }
}
