//! Expressions of rule files (`value:`, a computed `face_value` or `min_spend`): their
//! names resolved against the manifest and the rule's params, errors at their character.

use super::*;
use crate::rules::expr::{Expr, Resolved, Var};

/// An expression written at `at` (`offset` its byte in the file, when known).
pub(super) struct Written<'a> {
    pub text: &'a str,
    pub at: Pos,
    pub offset: Option<usize>,
}

impl<'a> Written<'a> {
    pub(super) fn of(text: &'a Sp<String>) -> Self {
        Written {
            text,
            at: text.pos(),
            offset: text.offset(),
        }
    }

    /// Where the character at byte `offset` of the text is in the file.
    fn pos_of(&self, src: &SourceFile, offset: usize) -> Pos {
        let index = self.text.get(..offset).map_or(0, |t| t.chars().count());
        self.offset
            .and_then(|o| crate::rules::scalar::char_positions(&src.text, o, self.text))
            .and_then(|positions| positions.get(index).copied())
            .unwrap_or(self.at)
    }
}

/// Compiles a `value:` operand.
pub(super) fn compile_expr(
    text: &Sp<String>,
    owner: &Owner,
    ctx: &Context,
    with_face_value: bool,
    d: &mut Diagnostics,
) -> Option<Expr> {
    compile_written(&Written::of(text), owner, ctx, with_face_value, d)
}

/// Compiles an expression, reporting its first problem at its character.
pub(super) fn compile_written(
    w: &Written,
    owner: &Owner,
    ctx: &Context,
    with_face_value: bool,
    d: &mut Diagnostics,
) -> Option<Expr> {
    let resolve = |name: &str| resolve(name, owner, ctx, with_face_value);
    let known = known_names(owner, ctx, with_face_value);
    match Expr::compile(w.text, &resolve, &known) {
        Ok(e) => Some(e),
        Err(e) => {
            let help = text_param_named(owner, &e.message)
                .or_else(|| e.suggestion.map(|s| format!("did you mean `{s}`?")));
            let problem = Problem::BadExpression {
                text: w.text.to_string(),
                message: e.message,
            };
            d.at_with_help(owner.src, w.pos_of(owner.src, e.offset), problem, help);
            None
        }
    }
}

/// The help for an unknown name that is a param of the owner holding text, not a number.
fn text_param_named(owner: &Owner, message: &str) -> Option<String> {
    owner.params.iter().find_map(|(name, v)| {
        let text = v.as_str()?;
        let named = message.contains(&format!("`params.{name}`"));
        (named && param_value(v).is_none()).then(|| {
            format!("`params.{name}` is the text `{text}`: write a number as a plain decimal (`12.50`, `-3`) or a YAML number")
        })
    })
}

/// What a name of an expression stands for.
fn resolve(name: &str, owner: &Owner, ctx: &Context, with_face_value: bool) -> Option<Resolved> {
    if let Some(param) = name.strip_prefix("params.") {
        return param_value(owner.params.get(param)?).map(Resolved::Const);
    }
    Some(Resolved::Var(match name {
        "amount" => Var::Amount,
        "face_values" => Var::FaceValues,
        "face_value" if with_face_value => Var::FaceValue,
        _ => {
            if let Some(a) = ctx.accumulators.iter().position(|(n, _)| n == name) {
                Var::Accumulator(a)
            } else {
                let f = ctx
                    .facts
                    .iter()
                    .position(|f| f.name == name && is_number(f))?;
                Var::Fact(f)
            }
        }
    }))
}

/// Whether expressions may read a fact: a count or a decimal.
fn is_number(f: &Fact) -> bool {
    matches!(f.kind, FactType::Count | FactType::Decimal)
}

/// A param as a number, as scripts read it: a YAML number, or a string that is a plain
/// decimal (`"007"` is a code, text to both).
fn param_value(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) if super::params::is_plain_decimal(s) => Decimal::from_str(s).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

/// Every name an expression of this owner may use, for "did you mean".
fn known_names(owner: &Owner, ctx: &Context, with_face_value: bool) -> Vec<String> {
    let mut names: Vec<String> = vec!["amount".into(), "face_values".into()];
    if with_face_value {
        names.push("face_value".into());
    }
    names.extend(ctx.accumulators.iter().map(|(n, _)| n.clone()));
    names.extend(
        ctx.facts
            .iter()
            .filter(|f| is_number(f))
            .map(|f| f.name.clone()),
    );
    names.extend(
        owner
            .params
            .iter()
            .filter(|(_, v)| param_value(v).is_some())
            .map(|(k, _)| format!("params.{k}")),
    );
    names
}

/// Whether an amount's text is meant as an expression: it names something or computes.
/// Anything else is read as a decimal, so that a typo such as `4O` is a bad decimal.
fn looks_like_expression(text: &str) -> bool {
    let text = text.trim();
    Decimal::from_str(text).is_err()
        && (text.starts_with(|c: char| c.is_alphabetic() || c == '(')
            || text.contains(['+', '*', '/', '(', '%']))
}

/// An amount of a coupon: a decimal, or an expression (a string that is not a decimal).
pub(super) enum AmountOrExpr {
    Amount(Decimal),
    Expr(Expr),
}

/// A coupon's `face_value` or `min_spend` as written.
pub(super) fn amount_or_expr(
    v: &Sp<Value>,
    owner: &Owner,
    ctx: &Context,
    key: &'static str,
    sign: Sign,
    d: &mut Diagnostics,
) -> Option<AmountOrExpr> {
    let text = match &**v {
        Value::String(s) if looks_like_expression(s) => s,
        _ => return amount(v, owner.src, key, sign, d).map(AmountOrExpr::Amount),
    };
    let w = Written {
        text,
        at: v.pos(),
        offset: v.offset(),
    };
    let expr = compile_written(&w, owner, ctx, key == "min_spend", d)?;
    let Some(c) = expr.constant() else {
        return Some(AmountOrExpr::Expr(expr));
    };
    if let Some(want) = sign.refuses(c) {
        let value = text.to_string();
        d.at(owner.src, v.pos(), Problem::BadAmount { key, value, want });
        return None;
    }
    Some(AmountOrExpr::Amount(c))
}
