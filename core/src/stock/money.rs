//! Money: a sale's price is a count of minor units (cents, for euros) of one [`Currency`], and
//! an order's amount is its quantity times the price at the moment of the buy.
//!
//! Amounts are integers end to end, never floats: the scripts compute them in Lua, whose numbers
//! are doubles, so a price is at most [`MAX_PRICE`], which keeps every amount of a buy (at most
//! `MAX_BUY_QTY` units, see the service) far inside the integers a double holds exactly.
//!
//! What it does not do: convert, round or format money for people, or know which codes ISO 4217
//! assigns (a code is three capital letters; the shop's payment side knows the rest).

use std::fmt;

/// The highest price of one unit, in minor units (10¹² cents: ten billion euros). With at most a
/// few hundred units per buy, every amount stays below 2⁵³, exact in a Lua number.
pub const MAX_PRICE: i64 = 1_000_000_000_000;

/// An ISO 4217 currency code: three ASCII capital letters (`EUR`, `USD`, `CNY`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The code if `code` is three ASCII capital letters.
    pub fn parse(code: &str) -> Option<Self> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Some(Self([a, b, c])),
            _ => None,
        }
    }

    /// The code, e.g. `"EUR"`.
    pub fn as_str(&self) -> &str {
        // Three ASCII capitals, checked in `parse`: always UTF-8.
        std::str::from_utf8(&self.0).expect("ASCII")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// What `qty` units cost at `price` each, in minor units. Never overflows for a price up to
/// [`MAX_PRICE`] and a quantity a buy may ask for; saturates beyond, so a caller that skipped
/// validation gets an amount no payment matches rather than a wrapped one.
pub fn amount(qty: i64, price: i64) -> i64 {
    qty.saturating_mul(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_currency_is_three_capital_letters() {
        let eur = Currency::parse("EUR").expect("a code");
        assert_eq!((eur.as_str(), eur.to_string()), ("EUR", "EUR".to_owned()));
        for bad in ["", "EU", "EURO", "eur", "Eur", "E1R", "€UR", "EÜR", " EU"] {
            assert_eq!(Currency::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_amount_of_a_valid_buy_is_exact_in_a_lua_number() {
        // Lua numbers are doubles: integers up to 2^53 are exact.
        assert!(amount(1_000, MAX_PRICE) < 1 << 53);
        assert_eq!(amount(3, 1999), 5997);
        assert_eq!(amount(2, i64::MAX), i64::MAX);
    }
}
