//! Events from CSV: a header row names the columns as in JSON; an empty cell is an absent
//! field; lists (`coupons`, `face_values`) are `;`-separated. Unknown columns are kept as
//! text.

use std::borrow::Cow;

use serde::de::value::Error as DeError;

use super::event_json::{parse_amount, parse_at};
use super::flat_json::plain;
use crate::model::{Event, Field};

/// Column positions of the contract's fields (in the order of `Field::KNOWN`), resolved
/// once from the header.
#[derive(Debug, Default)]
pub struct CsvColumns {
    known: [Option<usize>; 12],
    extra: Vec<(usize, String)>,
}

impl CsvColumns {
    /// Resolves the header row.
    pub fn from_header(header: &csv::StringRecord) -> Self {
        let mut cols = CsvColumns::default();
        for (i, name) in header.iter().enumerate() {
            let name = name.trim().trim_start_matches('\u{feff}');
            match Field::KNOWN.iter().position(|(n, _)| *n == name) {
                Some(k) => {
                    if let Some(slot) = cols.known.get_mut(k) {
                        *slot = Some(i);
                    }
                }
                None => cols.extra.push((i, name.to_string())),
            }
        }
        cols
    }

    fn cell<'r>(&self, record: &'r csv::StringRecord, k: usize) -> Option<&'r str> {
        let i = (*self.known.get(k)?)?;
        record.get(i).filter(|s| !s.is_empty())
    }

    /// The record's non-empty `id`, if it has one: a rejected record still names its event.
    pub fn id(&self, record: &csv::StringRecord) -> Option<String> {
        self.cell(record, 0).map(str::to_string)
    }

    /// Reads one record as an event.
    pub fn parse<'r>(&self, record: &'r csv::StringRecord) -> Result<Event<'r>, String> {
        let req = |k: usize| {
            self.cell(record, k).map(Cow::Borrowed).ok_or_else(|| {
                format!(
                    "missing field `{}`",
                    Field::KNOWN.get(k).map_or("", |(n, _)| *n)
                )
            })
        };
        let opt = |k: usize| self.cell(record, k).map(Cow::Borrowed);
        let list = |k: usize| {
            self.cell(record, k).map(|s| {
                s.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
        };
        let at = parse_at::<DeError>(&req(2)?).map_err(|e| e.to_string())?;
        let amount = match self.cell(record, 8) {
            Some(a) => Some(parse_amount::<DeError>("amount", a).map_err(|e| e.to_string())?),
            None => None,
        };
        let face_values = match list(11) {
            Some(items) => Some(
                items
                    .iter()
                    .map(|v| parse_amount::<DeError>("face_values", v))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let (id, customer, wallet) = (req(0)?, req(3)?, req(4)?);
        let plain = [&id, &customer, &wallet].iter().all(|s| plain(s));
        Ok(Event {
            id,
            kind: req(1)?,
            at,
            customer,
            wallet,
            card_product: opt(5),
            card_role: opt(6),
            merchant: opt(7),
            amount,
            channel: opt(9),
            coupons: list(10).map(|v| v.into_iter().map(Cow::Borrowed).collect()),
            face_values,
            extra: self
                .extra
                .iter()
                .filter_map(|(i, name)| {
                    let v = record.get(*i).filter(|s| !s.is_empty())?;
                    Some((
                        Cow::Owned(name.clone()),
                        serde_json::Value::String(v.to_string()),
                    ))
                })
                .collect(),
            plain,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cells_are_absent_and_lists_split_on_semicolons() {
        let header = csv::StringRecord::from(vec![
            "id",
            "type",
            "at",
            "customer",
            "wallet",
            "amount",
            "coupons",
            "face_values",
            "mcc",
        ]);
        let cols = CsvColumns::from_header(&header);
        let rec = csv::StringRecord::from(vec![
            "E1",
            "request",
            "2031-03-04T10:00:00Z",
            "C1",
            "W1",
            "",
            "",
            "5;2",
            "tx-9",
        ]);
        let ev = cols.parse(&rec).unwrap();
        assert_eq!(ev.amount, None);
        assert_eq!(ev.coupons, None);
        assert_eq!(ev.face_values.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            ev.extra_value("mcc"),
            Some(&serde_json::Value::String("tx-9".into()))
        );
        let bad =
            csv::StringRecord::from(vec!["E1", "sale", "2031-03-04", "C1", "W1", "", "", "", ""]);
        assert!(cols.parse(&bad).unwrap_err().contains("RFC 3339"));
    }
}
