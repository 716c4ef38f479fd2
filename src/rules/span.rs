//! Positions from the YAML reader: [`Sp<T>`] is a value of a rule file with the line and
//! column the reader found it at, so that a diagnostic points at the value itself rather
//! than at a place found by searching the file's text.

use std::borrow::Cow;
use std::ops::Deref;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;

/// A 1-based line and column in a file (column in characters); line 0 is the file as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A value as read, with where it was read from. It reads as `T` (`Deref`), and its JSON
/// Schema is `T`'s: the position is the reader's, not part of the rule language.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Sp<T>(serde_saphyr::Spanned<T>);

impl<T> Sp<T> {
    /// Where the value starts (for an alias, where the alias is used).
    pub fn pos(&self) -> Pos {
        let at = &self.0.referenced;
        Pos {
            line: usize::try_from(at.line()).unwrap_or(0),
            column: usize::try_from(at.column()).unwrap_or(0),
        }
    }

    /// The byte offset in the file's text where the value starts, when the reader knows it.
    pub fn offset(&self) -> Option<usize> {
        self.0
            .referenced
            .span()
            .byte_offset()
            .and_then(|o| usize::try_from(o).ok())
    }
}

/// A value the file leaves out, at no position (line 0: the file as a whole).
impl<T: Default> Default for Sp<T> {
    fn default() -> Sp<T> {
        Sp(serde_saphyr::Spanned {
            value: T::default(),
            referenced: serde_saphyr::Location::UNKNOWN,
            defined: serde_saphyr::Location::UNKNOWN,
        })
    }
}

impl<T> Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

impl From<(usize, usize)> for Pos {
    fn from((line, column): (usize, usize)) -> Pos {
        Pos { line, column }
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Sp<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.value.fmt(f)
    }
}

/// Serialized as its value: the JSON Schema of a field with a default shows the default
/// (`weekend: []`) as it did before values carried their positions.
impl<T: serde::Serialize> serde::Serialize for Sp<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.value.serialize(serializer)
    }
}
