//! `promo schema`: the JSON Schema of rule files, generated from the rule language's types.

use super::Exit;
use crate::rules::schema::{schema_for, SchemaKind};

/// Prints the schema of `kind`.
pub fn run(kind: SchemaKind) -> Exit {
    match serde_json::to_string_pretty(&schema_for(kind)) {
        Ok(text) => {
            outln!("{text}");
            Exit::Success
        }
        Err(e) => {
            errln!("promo schema: {e}");
            Exit::Error
        }
    }
}
