//! Calls: each Lua script's contract, owned here, beside the `.lua` file it runs.
//!
//! For every script there is one [`Lua`] (its text and its arity, which the script itself
//! asserts on its first line), one function that packs its KEYS and ARGV from typed inputs into a
//! [`Call`], and one function that parses its reply into domain values. A store that runs a
//! `Call` only sends it and hands the reply back; the bench binary and the tests build their
//! calls with the same functions, so no argument list is written twice.
//!
//! What it does not do: talk to Redis (a `Call` is plain data), or decide which calls to make in
//! which order (the stores do; the split-sale policy is [`super::split`]).

mod lock;
mod replicas;
mod room;
mod sale;
mod transfer;

pub use self::lock::*;
pub use self::replicas::*;
pub use self::room::*;
pub use self::sale::*;
pub use self::transfer::*;

use super::StockError;

/// One Lua script: its file's name, text and arity (`#KEYS`, `#ARGV`).
#[derive(Debug, PartialEq, Eq)]
pub struct Lua {
    /// The file name under `stock/lua/`, without `.lua`.
    pub name: &'static str,
    /// The script's text.
    pub source: &'static str,
    /// How many KEYS it takes.
    pub keys: usize,
    /// How many ARGV it takes (for a batch script, before its first item).
    pub args: usize,
    /// For a batch script, how many more ARGV each item takes (at least one item); 0 otherwise.
    pub each: usize,
    /// Whether its reply becomes a client's acknowledgement (a Buy, a payment, a cancellation,
    /// a seed-contract step, an admin put, a sub-pool move a Buy waits on): under
    /// `--durability fsync` with WAITAOF, such a reply waits until the write is on disk. The
    /// order worker's, the sweeper's and the read-only scripts answer no client.
    pub acknowledged: bool,
}

macro_rules! scripts {
    (@acknowledged) => { false };
    (@acknowledged acknowledged) => { true };
    ($($(#[$doc:meta])* $id:ident = $file:literal, $keys:literal keys, $args:literal args
        $(+ $each:literal each)? $(, $ack:ident)?;)+) => {
        $(
            $(#[$doc])*
            pub const $id: Lua = Lua {
                name: $file,
                source: include_str!(concat!("../lua/", $file, ".lua")),
                keys: $keys,
                args: $args,
                each: 0 $(+ $each)?,
                acknowledged: scripts!(@acknowledged $($ack)?),
            };
        )+
        /// Every script, for the store's registry and the arity tests.
        pub const ALL: &[&Lua] = &[$(&$id),+];
    };
}

scripts! {
    /// `Admin.PutSkuStock`.
    PUT_STOCK = "put_stock", 1 keys, 2 args, acknowledged;
    /// `Admin.PutEvent`: define a sale and pre-warm its pool.
    PUT_EVENT = "put_event", 4 keys, 13 args, acknowledged;
    /// `Admin.PutEvent` of a split sale: define it in one sub-pool's shard.
    PUT_SUBPOOL = "put_subpool", 4 keys, 13 args, acknowledged;
    /// A transfer between two shards, step one: take units out and journal them.
    MOVE_OUT = "move_out", 3 keys, 7 args, acknowledged;
    /// A transfer between two shards, step two: credit them once.
    MOVE_IN = "move_in", 3 keys, 3 args, acknowledged;
    /// A transfer between two shards, step three: its journal entry becomes a tombstone.
    MOVE_FORGET = "move_forget", 2 keys, 3 args;
    /// Read-only: a shard's transfer journal, with the node's clock.
    MOVE_READ = "move_read", 1 keys, 0 args;
    /// `Seckill.Buy`: the whole decision of 1 to [`BUY_BATCH_MAX`] buys, one script.
    BUY_BATCH = "buy_batch", 6 keys, 3 args + 4 each, acknowledged;
    /// The order worker: a read batch's wins QUEUED → PENDING_PAYMENT, exactly once, and
    /// acknowledged in the same step.
    CREATE_ORDER = "create_order", 4 keys, 6 args;
    /// The order worker after `create_order.lua`, and the order sink after its commit: entries
    /// of a one-group stream acknowledged and deleted (a head trim, XDEL only above a pending one).
    STREAM_ACK = "stream_ack", 1 keys, 1 args + 1 each;
    /// `Seckill.PayOrder`: the payment side's confirmation, locked → sold.
    PAY = "pay", 4 keys, 6 args, acknowledged;
    /// `Seckill.CancelOrder` and the sweeper's expiry: locked → pool or available.
    RELEASE_ORDER = "release_order", 6 keys, 5 args, acknowledged;
    /// The sweeper's end of a sale: pool → available; its retirement once its orders are final.
    CLOSE_EVENT = "close_event", 3 keys, 5 args;
    /// The sweeper, a retention time after a sale retired: a range of its orders deleted.
    PURGE_ORDERS = "purge_orders", 2 keys, 5 args;
    /// Read-only: a SKU's counters and the sum of its sales' pools.
    LEDGER = "ledger", 2 keys, 1 args;
    /// A seed-contract lock's journal as it is now, with its age by the journal node's clock.
    LOCK_READ = "lock_read", 1 keys, 0 args;
    /// Opens a fresh lock attempt (absent or ABORTED → PENDING), compare-and-set on seq.
    LOCK_BEGIN = "lock_begin", 1 keys, 7 args, acknowledged;
    /// One journal transition, compare-and-set on seq and status.
    LOCK_MOVE = "lock_move", 1 keys, 3 args, acknowledged;
    /// Takes one SKU's units for one attempt (available → locked).
    LOCK_TAKE = "lock_take", 3 keys, 4 args, acknowledged;
    /// Gives one SKU's units back (locked → available), or fences the SKU against the attempt.
    LOCK_RELEASE = "lock_release", 3 keys, 4 args, acknowledged;
    /// Commits one SKU's units (locked → sold).
    LOCK_FINISH = "lock_finish", 3 keys, 4 args, acknowledged;
    /// Enters a lock in the open and full directories before a move repair must see.
    LOCK_REGISTER = "lock_register", 2 keys, 2 args, acknowledged;
    /// Drops a settled lock from the open directory.
    LOCK_SETTLE = "lock_settle", 1 keys, 2 args, acknowledged;
    /// `Admin.PutEvent` of a waiting-room sale: the room's settings.
    ROOM_PUT = "room_put", 3 keys, 4 args, acknowledged;
    /// `Queue.JoinQueue`: a place in the line, once per user.
    ROOM_JOIN = "room_join", 4 keys, 5 args, acknowledged;
    /// `Queue.GetQueue` and the sweeper: lapses, forgets buyers, admits the next places.
    ROOM_MOVE = "room_move", 6 keys, 5 args;
    /// Read-only: `Queue.ClaimAdmission`, where a place stands.
    ROOM_CLAIM = "room_claim", 4 keys, 3 args;
}

/// One script run, packed: the script, its KEYS and its ARGV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The script.
    pub script: &'static Lua,
    /// KEYS, as many as the script takes.
    pub keys: Vec<String>,
    /// ARGV, as many as the script takes.
    pub args: Vec<String>,
}

impl Call {
    fn new(script: &'static Lua, keys: Vec<String>, args: Vec<String>) -> Self {
        debug_assert_eq!(keys.len(), script.keys, "{} KEYS", script.name);
        if script.each == 0 {
            debug_assert_eq!(args.len(), script.args, "{} ARGV", script.name);
        } else {
            debug_assert!(
                args.len() > script.args && (args.len() - script.args) % script.each == 0,
                "{} ARGV",
                script.name
            );
        }
        Self { script, keys, args }
    }
}

/// A reply that is not a value of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The script refused (the caller's to fix).
    Refused(StockError),
    /// The reply does not fit the script's contract.
    Malformed(String),
}

impl From<StockError> for ReplyError {
    fn from(e: StockError) -> Self {
        Self::Refused(e)
    }
}

/// The result of parsing a reply.
pub type ReplyResult<T> = Result<T, ReplyError>;

pub(crate) fn malformed(what: impl std::fmt::Display) -> ReplyError {
    ReplyError::Malformed(what.to_string())
}

/// Parses a Lua refusal of the form `CODE detail` into a [`StockError`].
///
/// Scripts answer a refusal as a status array `{"ERR_CODE", detail}`; see each script's header.
pub fn refusal(code: &str, detail: &str) -> Option<StockError> {
    Some(match code {
        "NOT_FOUND" => StockError::NotFound(detail.to_owned()),
        "FAILED_PRECONDITION" => StockError::FailedPrecondition(detail.to_owned()),
        "ALREADY_EXISTS" => StockError::AlreadyExists(detail.to_owned()),
        "NOT_YOURS" => StockError::NotYours(detail.to_owned()),
        _ => return None,
    })
}

/// Splits a script's `{status, …}` reply, turning refusal codes into [`StockError`]s.
pub fn status(reply: &[String]) -> ReplyResult<&str> {
    let code = reply
        .first()
        .ok_or_else(|| malformed("empty script reply"))?;
    let detail = reply.get(1).map(String::as_str).unwrap_or("");
    match refusal(code, detail) {
        Some(refused) => Err(ReplyError::Refused(refused)),
        None => Ok(code),
    }
}

/// A number in a reply.
pub fn num(s: &str) -> ReplyResult<i64> {
    s.parse()
        .map_err(|_| malformed(format!("not a number: {s:?}")))
}

/// The `n`-th element of a reply, as a number.
fn num_at(reply: &[String], n: usize, what: &str) -> ReplyResult<i64> {
    num(reply
        .get(n)
        .ok_or_else(|| malformed(format!("{what} reply {reply:?}")))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The highest `NAME[n]` (or `NAME[a..b]`) the header (the leading comment) mentions.
    fn header_arity(source: &str, name: &str) -> usize {
        let header: String = source
            .lines()
            .take_while(|l| l.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut most = 0;
        let pat = format!("{name}[");
        let mut rest = header.as_str();
        while let Some(at) = rest.find(&pat) {
            rest = &rest[at + pat.len()..];
            let end = rest.find(']').expect("closing bracket");
            let inside = &rest[..end];
            let last = inside.rsplit("..").next().expect("an index");
            most = most.max(last.parse().expect("a number in brackets"));
        }
        most
    }

    #[test]
    fn the_scripts_whose_reply_answers_a_client_are_marked_acknowledged() {
        let acknowledged: Vec<&str> = ALL
            .iter()
            .filter(|lua| lua.acknowledged)
            .map(|lua| lua.name)
            .collect();
        // The worker's, the sweeper's and the reads answer no client.
        for quiet in [
            "create_order",
            "close_event",
            "purge_orders",
            "move_forget",
            "move_read",
            "ledger",
            "lock_read",
            "room_move",
            "room_claim",
            "stream_ack",
        ] {
            assert!(!acknowledged.contains(&quiet), "{quiet}");
        }
        assert_eq!(acknowledged.len() + 10, ALL.len(), "{acknowledged:?}");
    }

    #[test]
    fn every_script_asserts_the_arity_its_header_and_its_call_say() {
        for lua in ALL {
            assert_eq!(
                header_arity(lua.source, "KEYS"),
                lua.keys,
                "{} KEYS",
                lua.name
            );
            // A batch script's header names its first item's ARGV.
            assert_eq!(
                header_arity(lua.source, "ARGV"),
                lua.args + lua.each,
                "{} ARGV",
                lua.name
            );
            let first_code = lua
                .source
                .lines()
                .find(|l| !l.starts_with("--"))
                .expect("code after the header");
            let expected = if lua.each == 0 {
                format!(
                    "assert(#KEYS == {} and #ARGV == {}, '{}.lua: {} KEYS, {} ARGV')",
                    lua.keys, lua.args, lua.name, lua.keys, lua.args
                )
            } else {
                format!(
                    "assert(#KEYS == {k} and #ARGV >= {min} and (#ARGV - {a}) % {e} == 0, \
                     '{}.lua: {k} KEYS, {a} + {e}n ARGV')",
                    lua.name,
                    k = lua.keys,
                    min = lua.args + lua.each,
                    a = lua.args,
                    e = lua.each
                )
            };
            assert_eq!(first_code, expected, "{}", lua.name);
        }
        let mut names: Vec<_> = ALL.iter().map(|l| l.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "one entry per script");
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/stock/lua"))
            .expect("the script folder")
            .count();
        assert_eq!(files, ALL.len(), "every .lua file has its call");
    }

    #[test]
    fn refusals_parse_into_stock_errors() {
        assert_eq!(
            refusal("NOT_YOURS", "1-1"),
            Some(StockError::NotYours("1-1".into()))
        );
        assert_eq!(refusal("OK", ""), None);
        let reply = vec!["NOT_FOUND".to_owned(), "order 1-1".to_owned()];
        assert_eq!(
            status(&reply),
            Err(ReplyError::Refused(StockError::NotFound(
                "order 1-1".into()
            )))
        );
        assert_eq!(status(&["OK".to_owned()]), Ok("OK"));
        assert!(status(&[]).is_err());
    }
}
