//! An event as read from a transaction stream. Strings borrow from the input line where they
//! can, so reading an event allocates nothing but its lists and unknown fields.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;

/// A field of an event that rules may name. `Extra` is any field the contract does not
/// define; such fields are kept and visible to conditions and scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Id,
    Type,
    At,
    Customer,
    Wallet,
    CardProduct,
    CardRole,
    Merchant,
    Amount,
    Channel,
    Coupons,
    FaceValues,
    Extra(Box<str>),
}

impl Field {
    /// The contract's fields, by their wire names.
    pub const KNOWN: [(&'static str, Field); 12] = [
        ("id", Field::Id),
        ("type", Field::Type),
        ("at", Field::At),
        ("customer", Field::Customer),
        ("wallet", Field::Wallet),
        ("card_product", Field::CardProduct),
        ("card_role", Field::CardRole),
        ("merchant", Field::Merchant),
        ("amount", Field::Amount),
        ("channel", Field::Channel),
        ("coupons", Field::Coupons),
        ("face_values", Field::FaceValues),
    ];

    /// The field of that wire name; a name the contract does not define is an extra field.
    pub fn from_name(name: &str) -> Field {
        Self::KNOWN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| Field::Extra(name.into()))
    }

    /// The wire name of the field.
    pub fn name(&self) -> &str {
        match self {
            Field::Extra(name) => name,
            known => Self::KNOWN
                .iter()
                .find(|(_, f)| f == known)
                .map_or("", |(n, _)| n),
        }
    }
}

/// The value of an unknown extra field: JSON keeps its value, CSV gives text.
pub type ExtraValue = serde_json::Value;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub id: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    pub at: DateTime<FixedOffset>,
    pub customer: Cow<'a, str>,
    pub wallet: Cow<'a, str>,
    pub card_product: Option<Cow<'a, str>>,
    pub card_role: Option<Cow<'a, str>>,
    pub merchant: Option<Cow<'a, str>>,
    pub amount: Option<Decimal>,
    pub channel: Option<Cow<'a, str>>,
    pub coupons: Option<Vec<Cow<'a, str>>>,
    pub face_values: Option<Vec<Decimal>>,
    pub extra: Vec<(Cow<'a, str>, ExtraValue)>,
    /// `id`, `customer` and `wallet` are known to hold no quote, backslash or control
    /// character (the reader checked): written into JSON as they are.
    pub plain: bool,
}

impl Event<'_> {
    /// The same event, owning its text.
    pub fn into_owned(self) -> Event<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Event {
            id: own(self.id),
            kind: own(self.kind),
            at: self.at,
            customer: own(self.customer),
            wallet: own(self.wallet),
            card_product: self.card_product.map(own),
            card_role: self.card_role.map(own),
            merchant: self.merchant.map(own),
            amount: self.amount,
            channel: self.channel.map(own),
            coupons: self.coupons.map(|ids| ids.into_iter().map(own).collect()),
            face_values: self.face_values,
            extra: self.extra.into_iter().map(|(k, v)| (own(k), v)).collect(),
            plain: self.plain,
        }
    }

    /// Whether the event carries a value for `field`.
    pub fn has(&self, field: &Field) -> bool {
        match field {
            Field::Id | Field::Type | Field::At | Field::Customer | Field::Wallet => true,
            Field::CardProduct => self.card_product.is_some(),
            Field::CardRole => self.card_role.is_some(),
            Field::Merchant => self.merchant.is_some(),
            Field::Amount => self.amount.is_some(),
            Field::Channel => self.channel.is_some(),
            Field::Coupons => self.coupons.is_some(),
            Field::FaceValues => self.face_values.is_some(),
            Field::Extra(name) => self.extra_value(name).is_some(),
        }
    }

    /// The text of a string field, if the event has it.
    pub fn text(&self, field: &Field) -> Option<&str> {
        match field {
            Field::Id => Some(&self.id),
            Field::Type => Some(&self.kind),
            Field::Customer => Some(&self.customer),
            Field::Wallet => Some(&self.wallet),
            Field::CardProduct => self.card_product.as_deref(),
            Field::CardRole => self.card_role.as_deref(),
            Field::Merchant => self.merchant.as_deref(),
            Field::Channel => self.channel.as_deref(),
            Field::Extra(name) => match self.extra_value(name)? {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            },
            Field::At | Field::Amount | Field::Coupons | Field::FaceValues => None,
        }
    }

    /// The value of an unknown extra field.
    pub fn extra_value(&self, name: &str) -> Option<&ExtraValue> {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }
}
