//! Expressions over exact decimals (a condition's `value:`, a coupon's `face_value` and
//! `min_spend`): compiled once with constants folded, then evaluated per event by a walk of
//! a boxed tree that neither allocates nor looks names up. Our own, as no well-kept crate
//! computes in `rust_decimal`.

use std::str::FromStr;

use rust_decimal::Decimal;

use super::error::closest;

/// What a name in an expression stands for; the caller resolves names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    Amount,
    FaceValues,
    FaceValue,
    Fact(usize),
    Accumulator(usize),
}

/// What the caller says a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Var(Var),
    Const(Decimal),
}

/// A compiled expression (constants folded).
#[derive(Debug, Clone)]
pub struct Expr {
    root: Node,
}

/// Why an expression text does not compile: byte offset and length within the text, and a
/// message; `suggestion` is the "did you mean" name if one is close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub suggestion: Option<String>,
}

/// Why an evaluation failed (division by zero, overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("division by zero")]
    DivisionByZero,
    #[error("the result is too large")]
    Overflow,
    #[error("rounding step must be greater than zero")]
    BadStep,
}

/// The functions, for "did you mean" and the unknown-function message.
const FUNCTIONS: [&str; 5] = ["min", "max", "round_down", "round_up", "round_half_up"];

/// Bounds the tree's depth (and so the recursion of parsing, evaluating and dropping it),
/// whatever the text: a tree is never deeper than its token count.
const MAX_TOKENS: usize = 512;

impl Expr {
    /// `resolve` maps a name (`amount`, `params.rate`, a fact name, ...) to what it is;
    /// `known` lists every name the caller accepts, for "did you mean".
    pub fn compile(
        text: &str,
        resolve: &dyn Fn(&str) -> Option<Resolved>,
        known: &[String],
    ) -> Result<Expr, ExprError> {
        let tokens = lex(text)?;
        let mut parser = Parser {
            text,
            tokens,
            pos: 0,
            resolve,
            known,
        };
        parser.whole().map(|root| Expr { root })
    }

    /// The expression that is the constant `value`.
    pub fn of_constant(value: Decimal) -> Expr {
        Expr {
            root: Node::Const(value),
        }
    }

    /// The value when the expression uses no variable.
    pub fn constant(&self) -> Option<Decimal> {
        match self.root {
            Node::Const(c) => Some(c),
            _ => None,
        }
    }

    /// Every variable it reads (for the engine's prefetch/read sets), each once, in the
    /// order they first appear.
    pub fn vars(&self) -> Vec<Var> {
        let mut out = Vec::new();
        self.root.collect_vars(&mut out);
        out
    }

    /// Evaluates with the variables' values.
    pub fn eval(&self, value: &mut dyn FnMut(Var) -> Decimal) -> Result<Decimal, EvalError> {
        self.root.eval(value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    fn apply(self, a: Decimal, b: Decimal) -> Result<Decimal, EvalError> {
        let result = match self {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::Div if b.is_zero() => return Err(EvalError::DivisionByZero),
            BinOp::Div => a.checked_div(b),
        };
        result.ok_or(EvalError::Overflow)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    Min,
    Max,
}

impl Pick {
    fn apply(self, a: Decimal, b: Decimal) -> Decimal {
        match self {
            Pick::Min => a.min(b),
            Pick::Max => a.max(b),
        }
    }
}

/// Rounding to a multiple of a step, named as `rust_decimal` and Java name them: by
/// magnitude, so that -12.345 rounds down to -12.34 as 12.345 does to 12.34.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    Down,
    Up,
    HalfUp,
}

impl Round {
    /// Through the remainder rather than `x / step`, which is exact: a quotient rounded to
    /// 28 digits could land on the wrong side of a multiple.
    fn apply(self, x: Decimal, step: Decimal) -> Result<Decimal, EvalError> {
        if step <= Decimal::ZERO {
            return Err(EvalError::BadStep);
        }
        let rem = x.checked_rem(step).ok_or(EvalError::Overflow)?;
        let toward_zero = x.checked_sub(rem).ok_or(EvalError::Overflow)?;
        let away = match self {
            Round::Down => false,
            Round::Up => !rem.is_zero(),
            // |rem| >= step / 2, without doubling (which could overflow).
            Round::HalfUp => rem.abs() >= step - rem.abs(),
        };
        if !away {
            return Ok(toward_zero);
        }
        let stepped = if x.is_sign_negative() {
            toward_zero.checked_sub(step)
        } else {
            toward_zero.checked_add(step)
        };
        stepped.ok_or(EvalError::Overflow)
    }
}

#[derive(Debug, Clone)]
enum Node {
    Const(Decimal),
    Var(Var),
    Neg(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    /// `min` / `max`: the first argument apart, so that there always is one.
    Pick(Pick, Box<Node>, Box<[Node]>),
    Round(Round, Box<Node>, Box<Node>),
}

impl Node {
    fn eval(&self, value: &mut dyn FnMut(Var) -> Decimal) -> Result<Decimal, EvalError> {
        match self {
            Node::Const(c) => Ok(*c),
            Node::Var(v) => Ok(value(*v)),
            Node::Neg(x) => Ok(-x.eval(value)?),
            Node::Bin(op, a, b) => op.apply(a.eval(value)?, b.eval(value)?),
            Node::Pick(pick, first, rest) => {
                let mut acc = first.eval(value)?;
                for arg in rest.iter() {
                    acc = pick.apply(acc, arg.eval(value)?);
                }
                Ok(acc)
            }
            Node::Round(round, x, step) => round.apply(x.eval(value)?, step.eval(value)?),
        }
    }

    fn collect_vars(&self, out: &mut Vec<Var>) {
        match self {
            Node::Const(_) => {}
            Node::Var(v) => {
                if !out.contains(v) {
                    out.push(*v);
                }
            }
            Node::Neg(x) => x.collect_vars(out),
            Node::Bin(_, a, b) | Node::Round(_, a, b) => {
                a.collect_vars(out);
                b.collect_vars(out);
            }
            Node::Pick(_, first, rest) => {
                first.collect_vars(out);
                rest.iter().for_each(|n| n.collect_vars(out));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    Num(Decimal),
    Name(&'a str),
    Open,
    Close,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    tok: Tok<'a>,
    at: usize,
    len: usize,
}

fn error(at: usize, len: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        offset: at,
        len,
        message: message.into(),
        suggestion: None,
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// The end of the run of bytes from `from` that `pred` accepts.
fn run_end(bytes: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| !pred(b)))
        .map_or(bytes.len(), |n| from + n)
}

/// The tokens of `text`, ending with `End` at its end.
fn lex(text: &str) -> Result<Vec<Token<'_>>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        if b.is_ascii_whitespace() {
            at += 1;
            continue;
        }
        if tokens.len() == MAX_TOKENS {
            let message = format!("the expression is too long (more than {MAX_TOKENS} tokens)");
            return Err(error(at, text.len() - at, message));
        }
        let token = match b {
            b'0'..=b'9' => number(text, at)?,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let end = run_end(bytes, at, is_name_byte);
                let name = text.get(at..end).unwrap_or_default();
                Token {
                    tok: Tok::Name(name),
                    at,
                    len: end - at,
                }
            }
            _ => punctuation(text, at)?,
        };
        at += token.len;
        tokens.push(token);
    }
    if tokens.is_empty() {
        return Err(error(0, text.len(), "the expression is empty"));
    }
    tokens.push(Token {
        tok: Tok::End,
        at: text.len(),
        len: 0,
    });
    Ok(tokens)
}

/// A number at `at`: digits, maybe a fraction, maybe a `%` right after it.
fn number(text: &str, at: usize) -> Result<Token<'_>, ExprError> {
    let bytes = text.as_bytes();
    let mut end = run_end(bytes, at, |b| b.is_ascii_digit());
    let fraction_follows = bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
    if bytes.get(end) == Some(&b'.') && fraction_follows {
        end = run_end(bytes, end + 1, |b| b.is_ascii_digit());
    }
    let digits = text.get(at..end).unwrap_or_default();
    let len = end - at;
    let too_large = || error(at, len, format!("the number `{digits}` is too large"));
    let mut value = Decimal::from_str(digits).map_err(|_| too_large())?;
    if bytes.get(end) == Some(&b'%') {
        end += 1;
        value = value
            .checked_div(Decimal::ONE_HUNDRED)
            .ok_or_else(too_large)?;
    }
    Ok(Token {
        tok: Tok::Num(value),
        at,
        len: end - at,
    })
}

fn punctuation(text: &str, at: usize) -> Result<Token<'_>, ExprError> {
    let tok = match text.as_bytes().get(at) {
        Some(b'(') => Tok::Open,
        Some(b')') => Tok::Close,
        Some(b',') => Tok::Comma,
        Some(b'+') => Tok::Plus,
        Some(b'-') => Tok::Minus,
        Some(b'*') => Tok::Star,
        Some(b'/') => Tok::Slash,
        _ => {
            let c = text.get(at..).and_then(|s| s.chars().next()).unwrap_or('?');
            let message = format!("unexpected character `{c}`");
            return Err(error(at, c.len_utf8(), message));
        }
    };
    Ok(Token { tok, at, len: 1 })
}

/// Recursive descent: `sum := product (('+'|'-') product)*`, `product := unary (('*'|'/')
/// unary)*`, `unary := '-' unary | primary`, `primary := number | name | call | '(' sum ')'`.
struct Parser<'a, 'r> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    pos: usize,
    resolve: &'r dyn Fn(&str) -> Option<Resolved>,
    known: &'r [String],
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Token<'a> {
        let end = Token {
            tok: Tok::End,
            at: self.text.len(),
            len: 0,
        };
        self.tokens.get(self.pos).copied().unwrap_or(end)
    }

    fn next(&mut self) -> Token<'a> {
        let token = self.peek();
        self.pos += 1;
        token
    }

    /// The token as written, for messages.
    fn shown(&self, token: Token<'a>) -> String {
        match token.tok {
            Tok::End => "the end".to_string(),
            _ => {
                let text = self.text.get(token.at..token.at + token.len);
                format!("`{}`", text.unwrap_or_default())
            }
        }
    }

    fn whole(&mut self) -> Result<Node, ExprError> {
        let node = self.sum()?;
        let next = self.peek();
        match next.tok {
            Tok::End => Ok(node),
            Tok::Close => Err(error(
                next.at,
                next.len,
                "unbalanced parenthesis: this `)` has no `(`",
            )),
            _ => {
                let message = format!(
                    "unexpected {} after a complete expression",
                    self.shown(next)
                );
                Err(error(next.at, next.len, message))
            }
        }
    }

    fn sum(&mut self) -> Result<Node, ExprError> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek().tok {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(left),
            };
            let at = self.next();
            let right = self.product()?;
            left = binary(op, left, right, at)?;
        }
    }

    fn product(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek().tok {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => return Ok(left),
            };
            let at = self.next();
            let right = self.unary()?;
            left = binary(op, left, right, at)?;
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.peek().tok != Tok::Minus {
            return self.primary();
        }
        self.next();
        Ok(match self.unary()? {
            Node::Const(c) => Node::Const(-c),
            node => Node::Neg(Box::new(node)),
        })
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let token = self.next();
        match token.tok {
            Tok::Num(value) => Ok(Node::Const(value)),
            Tok::Name(name) if self.peek().tok == Tok::Open => self.call(name, token),
            Tok::Name(name) => self.name(name, token),
            Tok::Open => {
                let inner = self.sum()?;
                self.close(token)?;
                Ok(inner)
            }
            _ => {
                let message = format!(
                    "expected a number, a name or `(`, found {}",
                    self.shown(token)
                );
                Err(error(token.at, token.len, message))
            }
        }
    }

    /// The `)` closing the `(` at `open`.
    fn close(&mut self, open: Token<'a>) -> Result<(), ExprError> {
        let next = self.next();
        match next.tok {
            Tok::Close => Ok(()),
            Tok::End => Err(error(
                open.at,
                open.len,
                "unbalanced parenthesis: this `(` is never closed",
            )),
            _ => {
                let message = format!("expected an operator or `)`, found {}", self.shown(next));
                Err(error(next.at, next.len, message))
            }
        }
    }

    fn name(&self, name: &str, token: Token<'a>) -> Result<Node, ExprError> {
        match (self.resolve)(name) {
            Some(Resolved::Var(v)) => Ok(Node::Var(v)),
            Some(Resolved::Const(c)) => Ok(Node::Const(c)),
            None if FUNCTIONS.contains(&name) => {
                let message = format!("`{name}` is a function: call it as `{name}(...)`");
                Err(error(token.at, token.len, message))
            }
            None => Err(ExprError {
                suggestion: closest(name, self.known.iter().map(String::as_str)).map(Into::into),
                ..error(token.at, token.len, format!("unknown name `{name}`"))
            }),
        }
    }

    fn call(&mut self, name: &str, token: Token<'a>) -> Result<Node, ExprError> {
        let func = match name {
            "min" => Func::Pick(Pick::Min),
            "max" => Func::Pick(Pick::Max),
            "round_down" => Func::Round(Round::Down),
            "round_up" => Func::Round(Round::Up),
            "round_half_up" => Func::Round(Round::HalfUp),
            _ => {
                let message = format!(
                    "unknown function `{name}`: the functions are {}",
                    FUNCTIONS.join(", ")
                );
                return Err(ExprError {
                    suggestion: closest(name, FUNCTIONS).map(Into::into),
                    ..error(token.at, token.len, message)
                });
            }
        };
        let args = self.args()?;
        func.build(name, args, token)
    }

    /// `(a, b, ...)` after a function's name.
    fn args(&mut self) -> Result<Vec<Node>, ExprError> {
        let open = self.next();
        let mut args = Vec::new();
        if self.peek().tok == Tok::Close {
            self.next();
            return Ok(args);
        }
        loop {
            args.push(self.sum()?);
            let next = self.peek();
            match next.tok {
                Tok::Comma => {
                    self.next();
                }
                Tok::Close | Tok::End => {
                    self.close(open)?;
                    return Ok(args);
                }
                _ => {
                    let message = format!("expected `,` or `)`, found {}", self.shown(next));
                    return Err(error(next.at, next.len, message));
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Func {
    Pick(Pick),
    Round(Round),
}

impl Func {
    fn build(self, name: &str, args: Vec<Node>, token: Token<'_>) -> Result<Node, ExprError> {
        let found = args.len();
        match self {
            Func::Pick(pick) => fold_pick(pick, args).ok_or_else(|| {
                error(
                    token.at,
                    token.len,
                    format!("`{name}` takes at least one argument"),
                )
            }),
            Func::Round(round) => {
                let [x, step]: [Node; 2] = args.try_into().map_err(|_| {
                    let message = format!("`{name}` takes 2 arguments (x, step), found {found}");
                    error(token.at, token.len, message)
                })?;
                match (&x, &step) {
                    (Node::Const(x), Node::Const(step)) => round
                        .apply(*x, *step)
                        .map(Node::Const)
                        .map_err(|e| always_fails(e, token)),
                    (_, Node::Const(step)) if *step <= Decimal::ZERO => {
                        Err(always_fails(EvalError::BadStep, token))
                    }
                    _ => Ok(Node::Round(round, Box::new(x), Box::new(step))),
                }
            }
        }
    }
}

/// A constant operation that fails fails on every event: a compile error at its operator.
fn always_fails(e: EvalError, token: Token<'_>) -> ExprError {
    error(token.at, token.len, format!("this always fails: {e}"))
}

fn binary(op: BinOp, a: Node, b: Node, token: Token<'_>) -> Result<Node, ExprError> {
    match (&a, &b) {
        (Node::Const(x), Node::Const(y)) => op
            .apply(*x, *y)
            .map(Node::Const)
            .map_err(|e| always_fails(e, token)),
        (_, Node::Const(y)) if op == BinOp::Div && y.is_zero() => {
            Err(always_fails(EvalError::DivisionByZero, token))
        }
        _ => Ok(Node::Bin(op, Box::new(a), Box::new(b))),
    }
}

/// `min` / `max` with its constant arguments folded into one, after the others; `None`
/// without arguments.
fn fold_pick(pick: Pick, args: Vec<Node>) -> Option<Node> {
    let mut constant: Option<Decimal> = None;
    let mut rest = Vec::with_capacity(args.len());
    for arg in args {
        match arg {
            Node::Const(c) => constant = Some(constant.map_or(c, |k| pick.apply(k, c))),
            node => rest.push(node),
        }
    }
    rest.extend(constant.map(Node::Const));
    let mut rest = rest.into_iter();
    let first = rest.next()?;
    let rest: Box<[Node]> = rest.collect();
    Some(match (first, rest.is_empty()) {
        (node, true) => node,
        (first, false) => Node::Pick(pick, Box::new(first), rest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::RoundingStrategy;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn resolve(name: &str) -> Option<Resolved> {
        Some(match name {
            "amount" => Resolved::Var(Var::Amount),
            "face_values" => Resolved::Var(Var::FaceValues),
            "face_value" => Resolved::Var(Var::FaceValue),
            "qualifying_spend" => Resolved::Var(Var::Fact(0)),
            "visits" => Resolved::Var(Var::Fact(1)),
            "month_total" => Resolved::Var(Var::Accumulator(0)),
            "params.rate" => Resolved::Const(d("0.1")),
            "params.zero" => Resolved::Const(Decimal::ZERO),
            _ => return None,
        })
    }

    fn known() -> Vec<String> {
        [
            "amount",
            "face_values",
            "face_value",
            "qualifying_spend",
            "visits",
            "month_total",
            "params.rate",
            "params.zero",
        ]
        .map(String::from)
        .to_vec()
    }

    fn compile(text: &str) -> Result<Expr, ExprError> {
        Expr::compile(text, &resolve, &known())
    }

    /// The values the tests give variables.
    fn values(v: Var) -> Decimal {
        match v {
            Var::Amount => d("120.50"),
            Var::FaceValues => d("30"),
            Var::FaceValue => d("25"),
            Var::Fact(0) => d("2900"),
            Var::Fact(_) => d("3"),
            Var::Accumulator(_) => d("-7.25"),
        }
    }

    fn eval(text: &str) -> Result<Decimal, EvalError> {
        compile(text).unwrap().eval(&mut values)
    }

    fn value(text: &str) -> Decimal {
        eval(text).unwrap()
    }

    fn err(text: &str) -> ExprError {
        compile(text).unwrap_err()
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(value("1 + 2 * 3"), d("7"));
        assert_eq!(value("(1 + 2) * 3"), d("9"));
        assert_eq!(value("10 - 4 - 3"), d("3"));
        assert_eq!(value("64 / 4 / 2"), d("8"));
        assert_eq!(value("2 * 3 - 8 / 4"), d("4"));
        assert_eq!(value("-2 * 3"), d("-6"));
        assert_eq!(value("-(2 + 3) * -2"), d("10"));
        assert_eq!(value("1 - -1"), d("2"));
        assert_eq!(value("qualifying_spend + amount"), d("3020.50"));
        assert_eq!(value("amount - face_values - visits"), d("87.50"));
        assert_eq!(value("amount / 2 / 5"), d("12.05"));
        assert_eq!(value("12.50 + 0.1"), d("12.60"));
    }

    #[test]
    fn percentages() {
        assert_eq!(value("10%"), d("0.10"));
        assert_eq!(value("amount * 10%"), d("12.05"));
        assert_eq!(value("12.5% * 8"), d("1"));
        assert_eq!(value("100% - 7%"), d("0.93"));
        // `%` only right after a number.
        assert_eq!(err("amount%").offset, 6);
        assert_eq!(err("10 %").offset, 3);
    }

    #[test]
    fn functions() {
        assert_eq!(value("min(amount * 10%, 50)"), d("12.05"));
        assert_eq!(value("min(amount, 45)"), d("45"));
        assert_eq!(value("max(1, amount, 3)"), d("120.50"));
        assert_eq!(value("min(7)"), d("7"));
        assert_eq!(value("max(month_total)"), d("-7.25"));
        assert_eq!(value("round_down(12.345, 0.01)"), d("12.34"));
        assert_eq!(value("round_down(-12.345, 0.01)"), d("-12.34"));
        assert_eq!(value("round_up(10.01, 10)"), Decimal::from(20));
        assert_eq!(value("round_up(10, 10)"), d("10"));
        assert_eq!(value("round_up(-10.01, 10)"), d("-20"));
        assert_eq!(value("round_half_up(15, 10)"), Decimal::from(20));
        assert_eq!(value("round_half_up(14.99, 10)"), d("10"));
        assert_eq!(value("round_half_up(-15, 10)"), d("-20"));
        assert_eq!(value("round_half_up(amount, 1)"), d("121"));
        assert_eq!(value("round_down(amount * params.rate, 5)"), d("10"));
        assert_eq!(value("round_down(10, 3)"), d("9"));
    }

    #[test]
    fn a_bad_step_fails_at_run_time_or_at_compile_time() {
        assert_eq!(
            eval("round_down(amount, amount - amount)"),
            Err(EvalError::BadStep)
        );
        assert_eq!(
            eval("round_up(amount, month_total)"),
            Err(EvalError::BadStep)
        );
        let e = err("round_half_up(15, 0)");
        assert_eq!((e.offset, e.len), (0, 13));
        assert!(e.message.contains("step"), "{}", e.message);
    }

    #[test]
    fn constants_fold() {
        let folded = |t: &str| compile(t).unwrap().constant();
        assert_eq!(folded("1 + 2 * 3"), Some(d("7")));
        assert_eq!(folded("min(params.rate * 100, 50) / 2"), Some(d("5")));
        assert_eq!(folded("round_half_up(14.99, 10)"), Some(d("10")));
        assert_eq!(folded("-(-(3))"), Some(d("3")));
        assert_eq!(folded("amount * 1"), None);
        // Constant arguments of min/max become one.
        let e = compile("min(3, amount, 1 + 1, 9)").unwrap();
        match &e.root {
            Node::Pick(Pick::Min, first, rest) => {
                assert!(matches!(**first, Node::Var(Var::Amount)));
                assert!(matches!(&rest[..], [Node::Const(c)] if *c == d("2")));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            compile("max(amount, 1)").unwrap().root,
            Node::Pick(..)
        ));
        assert!(matches!(compile("max(amount)").unwrap().root, Node::Var(_)));
    }

    #[test]
    fn a_constant_failure_is_a_compile_error_at_its_operator() {
        let e = err("amount + 1 / (2 - 2)");
        assert_eq!((e.offset, e.len), (11, 1));
        assert_eq!(e.message, "this always fails: division by zero");
        let e = err("amount / params.zero");
        assert_eq!(e.offset, 7);
        let e = err("round_down(amount, -1)");
        assert_eq!(
            e.message,
            "this always fails: rounding step must be greater than zero"
        );
        let e = err("79228162514264337593543950335 * 2 + amount");
        assert_eq!((e.offset, e.len), (30, 1));
        assert_eq!(e.message, "this always fails: the result is too large");
    }

    #[test]
    fn vars_lists_each_variable_once_in_order() {
        let e = compile("visits * amount + min(amount, month_total, params.rate) - face_value")
            .unwrap();
        assert_eq!(
            e.vars(),
            vec![
                Var::Fact(1),
                Var::Amount,
                Var::Accumulator(0),
                Var::FaceValue
            ]
        );
        assert!(compile("1 + params.rate").unwrap().vars().is_empty());
    }

    #[test]
    fn run_time_failures() {
        assert_eq!(
            eval("1 / (amount - amount)"),
            Err(EvalError::DivisionByZero)
        );
        assert_eq!(
            eval("amount / (month_total + 7.25)"),
            Err(EvalError::DivisionByZero)
        );
        let big = "79228162514264337593543950335";
        assert_eq!(eval(&format!("{big} * amount")), Err(EvalError::Overflow));
        assert_eq!(eval(&format!("{big} + amount")), Err(EvalError::Overflow));
        assert_eq!(eval(&format!("-{big} - amount")), Err(EvalError::Overflow));
        assert_eq!(
            eval(&format!("{big} / (amount / 241)")),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval(&format!("round_up({big} - 1 + amount - amount, 10)")),
            Err(EvalError::Overflow)
        );
    }

    #[test]
    fn unknown_names_suggest_a_close_one() {
        let e = err("amount + qualifying_spnd");
        assert_eq!((e.offset, e.len), (9, 15));
        assert_eq!(e.message, "unknown name `qualifying_spnd`");
        assert_eq!(e.suggestion.as_deref(), Some("qualifying_spend"));
        let e = err("params.rat * 2");
        assert_eq!(e.suggestion.as_deref(), Some("params.rate"));
        let e = err("zzz");
        assert_eq!((e.offset, e.len, e.suggestion), (0, 3, None));
        let e = err("min + 1");
        assert_eq!(e.message, "`min` is a function: call it as `min(...)`");
    }

    #[test]
    fn unknown_functions_list_the_known_ones() {
        let e = err("1 + round_dwn(amount, 1)");
        assert_eq!((e.offset, e.len), (4, 9));
        assert_eq!(
            e.message,
            "unknown function `round_dwn`: the functions are min, max, round_down, round_up, \
             round_half_up"
        );
        assert_eq!(e.suggestion.as_deref(), Some("round_down"));
        assert_eq!(
            err("amount(1)").message.split(':').next(),
            Some("unknown function `amount`")
        );
    }

    #[test]
    fn wrong_argument_counts() {
        let e = err("2 * round_up(amount)");
        assert_eq!((e.offset, e.len), (4, 8));
        assert_eq!(e.message, "`round_up` takes 2 arguments (x, step), found 1");
        let e = err("round_down(1, 2, 3)");
        assert_eq!(
            e.message,
            "`round_down` takes 2 arguments (x, step), found 3"
        );
        let e = err("1 + max()");
        assert_eq!((e.offset, e.len), (4, 3));
        assert_eq!(e.message, "`max` takes at least one argument");
    }

    #[test]
    fn syntax_errors_point_at_the_offending_token() {
        let at = |t: &str| {
            let e = err(t);
            (e.offset, e.len, e.message)
        };
        assert_eq!(at("amount # 2"), (7, 1, "unexpected character `#`".into()));
        assert_eq!(at("amount × 2"), (7, 2, "unexpected character `×`".into()));
        assert_eq!(
            at("2 * (amount + 1"),
            (
                4,
                1,
                "unbalanced parenthesis: this `(` is never closed".into()
            )
        );
        assert_eq!(
            at("min(amount, 1"),
            (
                3,
                1,
                "unbalanced parenthesis: this `(` is never closed".into()
            )
        );
        assert_eq!(
            at("amount + 1)"),
            (10, 1, "unbalanced parenthesis: this `)` has no `(`".into())
        );
        assert_eq!(
            at("amount 2"),
            (7, 1, "unexpected `2` after a complete expression".into())
        );
        assert_eq!(
            at("(amount 2)"),
            (8, 1, "expected an operator or `)`, found `2`".into())
        );
        assert_eq!(
            at("min(amount 2)"),
            (11, 1, "expected `,` or `)`, found `2`".into())
        );
        assert_eq!(
            at("amount +"),
            (
                8,
                0,
                "expected a number, a name or `(`, found the end".into()
            )
        );
        assert_eq!(
            at("amount * * 2"),
            (9, 1, "expected a number, a name or `(`, found `*`".into())
        );
        assert_eq!(
            at("()"),
            (1, 1, "expected a number, a name or `(`, found `)`".into())
        );
        assert_eq!(at(""), (0, 0, "the expression is empty".into()));
        assert_eq!(at("   "), (0, 3, "the expression is empty".into()));
        assert_eq!(at("1.5.3"), (3, 1, "unexpected character `.`".into()));
        let big = "1".repeat(40);
        assert_eq!(
            at(&format!("2 + {big}")),
            (4, 40, format!("the number `{big}` is too large"))
        );
    }

    #[test]
    fn long_or_deep_texts_are_refused_not_overflowed() {
        let long = vec!["amount"; 999].join(" + ");
        let e = err(&long);
        assert!(e.message.contains("too long"), "{}", e.message);
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(err(&deep).message.contains("too long"));
        // The deepest text allowed, in a test thread's small stack.
        let ok = format!("{}amount{}", "(".repeat(255), ")".repeat(255));
        assert_eq!(value(&ok), d("120.50"));
        let ok = format!("{}amount", "-".repeat(511));
        assert_eq!(value(&ok), d("-120.50"));
    }

    // --- property-style: generated expressions against a reference evaluation ---

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            // xorshift64*: deterministic, good enough to pick shapes.
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }
    }

    #[derive(Debug)]
    enum T {
        Num(&'static str),
        Name(&'static str),
        Neg(Box<T>),
        Bin(char, Box<T>, Box<T>),
        Pick(&'static str, Vec<T>),
        Round(&'static str, Box<T>, Box<T>),
    }

    const NUMBERS: [&str; 12] = [
        "0",
        "1",
        "2",
        "3",
        "0.5",
        "12.50",
        "10%",
        "0.01",
        "3000",
        "7",
        "0.1",
        "99999999999999999999999999",
    ];
    const NAMES: [&str; 4] = ["amount", "qualifying_spend", "params.rate", "month_total"];

    fn gen(rng: &mut Rng, depth: usize) -> T {
        let leaf = depth == 0 || rng.below(4) == 0;
        if leaf {
            return if rng.below(2) == 0 {
                T::Num(NUMBERS[rng.below(NUMBERS.len())])
            } else {
                T::Name(NAMES[rng.below(NAMES.len())])
            };
        }
        let sub = |rng: &mut Rng| Box::new(gen(rng, depth - 1));
        match rng.below(8) {
            0 => T::Neg(sub(rng)),
            1..=4 => {
                let op = ['+', '-', '*', '/'][rng.below(4)];
                T::Bin(op, sub(rng), sub(rng))
            }
            5 => {
                let name = ["min", "max"][rng.below(2)];
                let n = 1 + rng.below(3);
                T::Pick(name, (0..n).map(|_| gen(rng, depth - 1)).collect())
            }
            _ => {
                let name = ["round_down", "round_up", "round_half_up"][rng.below(3)];
                T::Round(name, sub(rng), sub(rng))
            }
        }
    }

    fn prec(t: &T) -> u8 {
        match t {
            T::Bin('+' | '-', ..) => 1,
            T::Bin(..) => 2,
            T::Neg(_) => 3,
            _ => 4,
        }
    }

    /// The text of `t`, parenthesized where precedence needs it (and at random elsewhere).
    fn render(t: &T, need: u8, rng: &mut Rng) -> String {
        let text = match t {
            T::Num(n) => n.to_string(),
            T::Name(n) => n.to_string(),
            T::Neg(x) => format!("-{}", render(x, 3, rng)),
            T::Bin(op, a, b) => {
                let p = prec(t);
                let space = [" ", ""][rng.below(2)];
                let (a, b) = (render(a, p, rng), render(b, p + 1, rng));
                format!("{a}{space}{op}{space}{b}")
            }
            T::Pick(name, args) => {
                let args: Vec<String> = args.iter().map(|a| render(a, 0, rng)).collect();
                format!("{name}({})", args.join(", "))
            }
            T::Round(name, x, s) => {
                format!("{name}({}, {})", render(x, 0, rng), render(s, 0, rng))
            }
        };
        if prec(t) < need || rng.below(10) == 0 {
            format!("({text})")
        } else {
            text
        }
    }

    /// A straightforward evaluation; rounding through the quotient, unlike `Round::apply`.
    fn reference(t: &T, v: &dyn Fn(&str) -> Decimal) -> Result<Decimal, EvalError> {
        let over = EvalError::Overflow;
        Ok(match t {
            T::Num(n) => match n.strip_suffix('%') {
                Some(n) => d(n) / Decimal::ONE_HUNDRED,
                None => d(n),
            },
            T::Name(n) => v(n),
            T::Neg(x) => -reference(x, v)?,
            T::Bin(op, a, b) => {
                let (a, b) = (reference(a, v)?, reference(b, v)?);
                match op {
                    '+' => a.checked_add(b).ok_or(over)?,
                    '-' => a.checked_sub(b).ok_or(over)?,
                    '*' => a.checked_mul(b).ok_or(over)?,
                    _ if b.is_zero() => return Err(EvalError::DivisionByZero),
                    _ => a.checked_div(b).ok_or(over)?,
                }
            }
            T::Pick(name, args) => {
                let values = args.iter().map(|a| reference(a, v));
                let values: Vec<Decimal> = values.collect::<Result<_, _>>()?;
                let it = values.into_iter();
                let best = if *name == "min" { it.min() } else { it.max() };
                best.ok_or(over)?
            }
            T::Round(name, x, s) => {
                let (x, s) = (reference(x, v)?, reference(s, v)?);
                if s <= Decimal::ZERO {
                    return Err(EvalError::BadStep);
                }
                let strategy = match *name {
                    "round_down" => RoundingStrategy::ToZero,
                    "round_up" => RoundingStrategy::AwayFromZero,
                    _ => RoundingStrategy::MidpointAwayFromZero,
                };
                let q = x.checked_div(s).ok_or(over)?;
                q.round_dp_with_strategy(0, strategy)
                    .checked_mul(s)
                    .ok_or(over)?
            }
        })
    }

    #[test]
    fn generated_expressions_agree_with_a_reference_evaluation() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut ok, mut failed, mut refused) = (0, 0, 0);
        for i in 0..600 {
            let t = gen(&mut rng, 1 + i % 5);
            let text = render(&t, 0, &mut rng);
            let amount = d(["120.50", "0", "-3", "2999.99"][i % 4]);
            let names = |n: &str| match n {
                "amount" => amount,
                "qualifying_spend" => d("2900"),
                "params.rate" => d("0.1"),
                _ => d("-7.25"),
            };
            let expected = reference(&t, &names);
            let compiled = match compile(&text) {
                Ok(e) => e,
                Err(e) => {
                    // Folding turns a constant failure into a compile error.
                    assert!(expected.is_err(), "{text}: {e} but {expected:?}");
                    assert!(e.message.starts_with("this always fails"), "{text}: {e}");
                    refused += 1;
                    continue;
                }
            };
            let got = compiled.eval(&mut |var| match var {
                Var::Amount => amount,
                Var::Fact(0) => d("2900"),
                _ => d("-7.25"),
            });
            assert_eq!(got, expected, "{text}");
            if compiled.vars().is_empty() {
                assert_eq!(compiled.constant(), expected.ok(), "{text}");
            }
            if got.is_ok() {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        // The generator reaches every outcome.
        assert!(
            ok > 300 && failed > 10 && refused > 10,
            "{ok} {failed} {refused}"
        );
    }
}
