//! `$((…))`: integer arithmetic as `sh` does it: `+ - * / %`, comparisons, `&& || !`,
//! parentheses, and variables by name (unset or not a number is 0).

use std::collections::BTreeMap;

/// Evaluates an expression, or says why not in `sh`'s words.
pub fn eval(expr: &str, vars: &BTreeMap<String, String>) -> Result<i64, String> {
    let tokens = tokens(expr, vars)?;
    let mut p = Eval { tokens, pos: 0, depth: 0 };
    let value = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(format!("sh: arithmetic syntax error: {expr}"));
    }
    Ok(value)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(i64),
    Op(&'static str),
}

fn tokens(expr: &str, vars: &BTreeMap<String, String>) -> Result<Vec<Token>, String> {
    const OPS: &[&str] = &["&&", "||", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "<", ">", "!", "(", ")"];
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let end = bytes[i..].iter().position(|b| !b.is_ascii_alphanumeric()).map_or(bytes.len(), |n| i + n);
            let n = expr[i..end].parse::<i64>().map_err(|_| format!("sh: arithmetic syntax error: {expr}"))?;
            out.push(Token::Num(n));
            i = end;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = if c == b'$' { i + 1 } else { i };
            let end = bytes[start..].iter().position(|b| !(b.is_ascii_alphanumeric() || *b == b'_')).map_or(bytes.len(), |n| start + n);
            let value = vars.get(&expr[start..end]).map(|v| v.trim().parse::<i64>().unwrap_or(0)).unwrap_or(0);
            out.push(Token::Num(value));
            i = end.max(i + 1);
        } else if let Some(op) = OPS.iter().find(|op| expr[i..].starts_with(**op)) {
            out.push(Token::Op(op));
            i += op.len();
        } else {
            return Err(format!("sh: arithmetic syntax error: {expr}"));
        }
    }
    Ok(out)
}

struct Eval {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Eval {
    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some(Token::Op(op)) => Some(op),
            _ => None,
        }
    }

    fn binary(&mut self, ops: &[&str], next: fn(&mut Eval) -> Result<i64, String>, apply: fn(&str, i64, i64) -> Result<i64, String>) -> Result<i64, String> {
        let mut left = next(self)?;
        while let Some(op) = self.peek_op().filter(|op| ops.contains(op)) {
            self.pos += 1;
            let right = next(self)?;
            left = apply(op, left, right)?;
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<i64, String> {
        self.binary(&["||"], Eval::and, |_, a, b| Ok(i64::from(a != 0 || b != 0)))
    }

    fn and(&mut self) -> Result<i64, String> {
        self.binary(&["&&"], Eval::equality, |_, a, b| Ok(i64::from(a != 0 && b != 0)))
    }

    fn equality(&mut self) -> Result<i64, String> {
        self.binary(&["==", "!="], Eval::relation, |op, a, b| Ok(i64::from((a == b) == (op == "=="))))
    }

    fn relation(&mut self) -> Result<i64, String> {
        self.binary(&["<", "<=", ">", ">="], Eval::sum, |op, a, b| {
            Ok(i64::from(match op {
                "<" => a < b,
                "<=" => a <= b,
                ">" => a > b,
                _ => a >= b,
            }))
        })
    }

    fn sum(&mut self) -> Result<i64, String> {
        self.binary(&["+", "-"], Eval::product, |op, a, b| Ok(if op == "+" { a.wrapping_add(b) } else { a.wrapping_sub(b) }))
    }

    fn product(&mut self) -> Result<i64, String> {
        self.binary(&["*", "/", "%"], Eval::unary, |op, a, b| match op {
            "*" => Ok(a.wrapping_mul(b)),
            _ if b == 0 => Err("sh: divide by zero".into()),
            "/" => Ok(a.wrapping_div(b)),
            _ => Ok(a.wrapping_rem(b)),
        })
    }

    fn unary(&mut self) -> Result<i64, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("sh: arithmetic nested too deeply".into());
        }
        let value = match self.tokens.get(self.pos).cloned() {
            Some(Token::Op("-")) => {
                self.pos += 1;
                self.unary()?.wrapping_neg()
            }
            Some(Token::Op("+")) => {
                self.pos += 1;
                self.unary()?
            }
            Some(Token::Op("!")) => {
                self.pos += 1;
                i64::from(self.unary()? == 0)
            }
            Some(Token::Op("(")) => {
                self.pos += 1;
                let v = self.or()?;
                if self.peek_op() != Some(")") {
                    return Err("sh: arithmetic syntax error: missing )".into());
                }
                self.pos += 1;
                v
            }
            Some(Token::Num(n)) => {
                self.pos += 1;
                n
            }
            _ => return Err("sh: arithmetic syntax error".into()),
        };
        self.depth -= 1;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_as_sh_does_it() {
        let vars: BTreeMap<String, String> = [("i".to_string(), "41".to_string()), ("s".to_string(), "x".to_string())].into();
        let e = |x: &str| eval(x, &vars);
        assert_eq!(e("i+1"), Ok(42));
        assert_eq!(e("$i * 2 - (3 + 1) / 2"), Ok(80));
        assert_eq!(e("7 % 3 == 1 && !0"), Ok(1));
        assert_eq!(e("-i < 0 || 0"), Ok(1));
        assert_eq!(e("s + unset"), Ok(0));
        assert_eq!(e("1 / 0"), Err("sh: divide by zero".into()));
        assert!(e("1 +").is_err());
        assert!(e(&"(".repeat(200)).is_err());
        assert_eq!(e("9223372036854775807 + 1"), Ok(i64::MIN), "wraps as sh's 64-bit arithmetic does");
    }
}
