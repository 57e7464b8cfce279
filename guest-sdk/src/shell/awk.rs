//! busybox's `awk`, the part scripts in pod specs use: `awk '{print $1}'`, `awk -F: '$3 >= 1000
//! {print $1}'`, `awk '/error/ {n++} END {print n}'`, `awk 'NR==2'`. A program is rules of a
//! pattern (an expression or `/regex/`, `BEGIN`, `END`) and an action of `print`, assignments
//! (`=`, `+=`, `-=`, `*=`, `/=`, `++`, `--`), `if`/`else`, `next` and `exit`; expressions have
//! fields, `NR`, `NF`, `FS`, variables, arithmetic, concatenation, comparisons, `~`, `!~`, `&&`,
//! `||`, `!`, and `length`, `toupper`, `tolower`, `substr`. No loops, so a program always ends;
//! what is not there (`while`, `for`, `printf`, arrays, `getline`, redirections) is a syntax
//! error, as busybox reports one.

use super::fs::{Fs, resolve};
use std::collections::BTreeMap;

/// The deepest nesting of parentheses and blocks a program may have.
const MAX_DEPTH: usize = 64;

/// Runs `awk ARGS` over the named files or `stdin`.
pub fn run(cwd: &str, args: &[String], fs: &Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let mut separator: Option<String> = None;
    let mut assignments = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-F" || a == "-v" {
            i += 1;
            let Some(value) = args.get(i) else {
                err.extend_from_slice(format!("awk: option requires an argument -- {}\n", &a[1..]).as_bytes());
                return 1;
            };
            if a == "-F" { separator = Some(value.clone()) } else { assignments.push(value.clone()) }
        } else if let Some(sep) = a.strip_prefix("-F") {
            separator = Some(sep.to_string());
        } else if a == "--" {
            i += 1;
            break;
        } else {
            break;
        }
        i += 1;
    }
    let Some(text) = args.get(i) else {
        err.extend_from_slice(b"Usage: awk [OPTIONS] [AWK_PROGRAM] [FILE]...\n");
        return 1;
    };
    let program = match parse(text) {
        Ok(p) => p,
        Err(e) => {
            err.extend_from_slice(format!("awk: cmd. line:1: {e}\n").as_bytes());
            return 1;
        }
    };
    let mut vm = Vm { vars: BTreeMap::new(), fields: Vec::new(), record: String::new(), nr: 0, out };
    vm.set_var("FS", Value::Str(separator.map(unescape).unwrap_or_else(|| " ".into())));
    for a in assignments {
        if let Some((name, value)) = a.split_once('=') {
            vm.set_var(name, Value::Str(unescape(value.to_string())));
        }
    }
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    let mut status = 0;
    for f in &args[i + 1..] {
        match (f.as_str(), fs.read(&resolve(cwd, f))) {
            ("-", _) => inputs.push(stdin.to_vec()),
            (_, Ok(data)) => inputs.push(data.to_vec()),
            (_, Err(e)) => {
                err.extend_from_slice(format!("awk: cannot open {f} ({e})\n").as_bytes());
                status = 2;
            }
        }
    }
    if args.len() == i + 1 {
        inputs.push(stdin.to_vec());
    }
    match vm.run(&program, &inputs) {
        Ok(code) if status == 0 => code,
        Ok(_) => status,
        Err(e) => {
            err.extend_from_slice(format!("awk: {e}\n").as_bytes());
            2
        }
    }
}

/// `\t` and `\\` in `-F` and `-v` values, as awk reads them.
fn unescape(s: String) -> String {
    if !s.contains('\\') {
        return s;
    }
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Regex(String),
    Name(String),
    Op(&'static str),
    Newline,
}

const OPS: [&str; 33] = [
    "&&", "||", "==", "!=", "<=", ">=", "!~", "+=", "-=", "*=", "/=", "%=", "++", "--", "{", "}", "(", ")", ";", ",", "+", "-", "*", "/", "%", "!", "<", ">",
    "~", "=", "$", "?", ":",
];

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // A `/` where an operand is expected opens a regular expression.
        let operand_expected = !matches!(toks.last(), Some(Tok::Num(_) | Tok::Str(_) | Tok::Name(_) | Tok::Regex(_) | Tok::Op(")" | "++" | "--")));
        if c == '\n' {
            toks.push(Tok::Newline);
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '\\' && chars.get(i + 1) == Some(&'\n') {
            i += 2;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let signed = matches!(chars.get(i + 1), Some('+' | '-')) && chars.get(i + 2).is_some_and(char::is_ascii_digit);
            if matches!(chars.get(i), Some('e' | 'E')) && (signed || chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
                i += if signed { 2 } else { 1 };
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let s: String = chars[start..i].iter().collect();
            toks.push(Tok::Num(s.parse().map_err(|_| format!("syntax error at '{s}'"))?));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(Tok::Name(chars[start..i].iter().collect()));
        } else if c == '"' || (c == '/' && operand_expected) {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None | Some('\n') => return Err(if c == '"' { "unterminated string".into() } else { "unterminated regexp".into() }),
                    Some(&d) if d == c => break,
                    Some('\\') if c == '"' => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&other) => s.push(other),
                            None => return Err("unterminated string".into()),
                        }
                    }
                    Some('\\') if chars.get(i + 1) == Some(&'/') => {
                        s.push('/');
                        i += 1;
                    }
                    Some(&d) => s.push(d),
                }
                i += 1;
            }
            i += 1;
            toks.push(if c == '"' { Tok::Str(s) } else { Tok::Regex(s) });
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = OPS.iter().find(|op| rest.starts_with(**op)).ok_or_else(|| format!("unexpected character '{c}'"))?;
            toks.push(Tok::Op(op));
            i += op.chars().count();
        }
    }
    Ok(toks)
}

#[derive(Debug, Clone)]
enum Expr {
    Num(f64),
    Str(String),
    /// `/re/` alone: whether it matches the record.
    Match(String),
    Var(String),
    Field(Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Concat(Box<Expr>, Box<Expr>),
    /// `x ~ /re/` (or a string as the pattern); `negate` for `!~`.
    Matches {
        value: Box<Expr>,
        pattern: Box<Expr>,
        negate: bool,
    },
    Assign(&'static str, Box<Expr>, Box<Expr>),
    /// `x++` and `x--`: the old value.
    PostIncrement(Box<Expr>, f64),
    PreIncrement(Box<Expr>, f64),
    Call(String, Vec<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone)]
enum Stmt {
    Print(Vec<Expr>),
    Expr(Expr),
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    Next,
    Exit(Option<Expr>),
}

#[derive(Debug, Clone)]
enum Pattern {
    Begin,
    End,
    All,
    When(Expr),
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    /// None: print the record.
    action: Option<Vec<Stmt>>,
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let mut p = Parser { toks: tokens(text)?, at: 0, depth: 0 };
    let mut rules = Vec::new();
    loop {
        p.skip_separators();
        if p.peek().is_none() {
            return Ok(rules);
        }
        let pattern = match p.peek() {
            Some(Tok::Name(n)) if n == "BEGIN" => {
                p.at += 1;
                Pattern::Begin
            }
            Some(Tok::Name(n)) if n == "END" => {
                p.at += 1;
                Pattern::End
            }
            Some(Tok::Op("{")) => Pattern::All,
            _ => Pattern::When(p.expr()?),
        };
        let action = if p.peek() == Some(&Tok::Op("{")) { Some(p.block()?) } else { None };
        if action.is_none() && matches!(pattern, Pattern::Begin | Pattern::End) {
            return Err("syntax error: BEGIN and END need an action".into());
        }
        // A rule with an action may be followed by the next at once; one without ends its line.
        let ended = action.is_some();
        rules.push(Rule { pattern, action });
        match p.peek() {
            None | Some(Tok::Newline | Tok::Op(";")) => {}
            Some(_) if ended => {}
            Some(t) => return Err(format!("syntax error at {}", show(t))),
        }
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("'{n}'"),
        Tok::Str(s) => format!("'\"{s}\"'"),
        Tok::Regex(r) => format!("'/{r}/'"),
        Tok::Name(n) => format!("'{n}'"),
        Tok::Op(o) => format!("'{o}'"),
        Tok::Newline => "newline".into(),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.eat(op) {
            return Ok(());
        }
        Err(match self.peek() {
            Some(t) => format!("syntax error at {}: '{op}' expected", show(t)),
            None => format!("unexpected end of program: '{op}' expected"),
        })
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline | Tok::Op(";"))) {
            self.at += 1;
        }
    }

    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.at += 1;
        }
    }

    fn deeper(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err("program nested too deeply".into()) } else { Ok(()) }
    }

    fn block(&mut self) -> Result<Vec<Stmt>, String> {
        self.expect("{")?;
        self.deeper()?;
        let mut stmts = Vec::new();
        loop {
            self.skip_separators();
            if self.eat("}") {
                self.depth -= 1;
                return Ok(stmts);
            }
            if self.peek().is_none() {
                return Err("unexpected end of program: '}' expected".into());
            }
            stmts.push(self.stmt()?);
        }
    }

    /// A statement, or a block in its place.
    fn body(&mut self) -> Result<Vec<Stmt>, String> {
        self.skip_newlines();
        if self.peek() == Some(&Tok::Op("{")) {
            self.block()
        } else {
            let s = self.stmt()?;
            self.eat(";");
            Ok(vec![s])
        }
    }

    fn stmt(&mut self) -> Result<Stmt, String> {
        let keyword = match self.peek() {
            Some(Tok::Name(n)) => n.clone(),
            _ => return Ok(Stmt::Expr(self.expr()?)),
        };
        match keyword.as_str() {
            "print" => {
                self.at += 1;
                let mut items = Vec::new();
                if !matches!(self.peek(), None | Some(Tok::Newline | Tok::Op(";" | "}"))) {
                    items.push(self.expr()?);
                    while self.eat(",") {
                        self.skip_newlines();
                        items.push(self.expr()?);
                    }
                }
                Ok(Stmt::Print(items))
            }
            "if" => {
                self.at += 1;
                self.expect("(")?;
                let cond = self.expr()?;
                self.expect(")")?;
                let then = self.body()?;
                let save = self.at;
                self.skip_separators();
                let otherwise = if matches!(self.peek(), Some(Tok::Name(n)) if n == "else") {
                    self.at += 1;
                    self.body()?
                } else {
                    self.at = save;
                    Vec::new()
                };
                Ok(Stmt::If(cond, then, otherwise))
            }
            "next" => {
                self.at += 1;
                Ok(Stmt::Next)
            }
            "exit" => {
                self.at += 1;
                let code = if matches!(self.peek(), None | Some(Tok::Newline | Tok::Op(";" | "}"))) { None } else { Some(self.expr()?) };
                Ok(Stmt::Exit(code))
            }
            "while" | "for" | "do" | "printf" | "getline" | "function" | "delete" | "break" | "continue" => Err(format!("'{keyword}' is not supported here")),
            _ => Ok(Stmt::Expr(self.expr()?)),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.deeper()?;
        let e = self.ternary();
        self.depth -= 1;
        e
    }

    fn ternary(&mut self) -> Result<Expr, String> {
        let cond = self.assignment()?;
        if !self.eat("?") {
            return Ok(cond);
        }
        let yes = self.expr()?;
        self.expect(":")?;
        let no = self.expr()?;
        Ok(Expr::Cond(Box::new(cond), Box::new(yes), Box::new(no)))
    }

    fn assignment(&mut self) -> Result<Expr, String> {
        let left = self.or()?;
        let op = match self.peek() {
            Some(Tok::Op(op @ ("=" | "+=" | "-=" | "*=" | "/=" | "%="))) => *op,
            _ => return Ok(left),
        };
        if !matches!(left, Expr::Var(_) | Expr::Field(_)) {
            return Err(format!("syntax error at '{op}': not assignable"));
        }
        self.at += 1;
        let right = self.expr()?;
        Ok(Expr::Assign(op, Box::new(left), Box::new(right)))
    }

    fn or(&mut self) -> Result<Expr, String> {
        self.left_associative(&["||"], Self::and)
    }

    fn and(&mut self) -> Result<Expr, String> {
        self.left_associative(&["&&"], Self::matching)
    }

    fn matching(&mut self) -> Result<Expr, String> {
        let mut left = self.comparison()?;
        loop {
            let negate = match self.peek() {
                Some(Tok::Op("~")) => false,
                Some(Tok::Op("!~")) => true,
                _ => return Ok(left),
            };
            self.at += 1;
            let pattern = match self.peek() {
                Some(Tok::Regex(r)) => {
                    let r = r.clone();
                    self.at += 1;
                    Expr::Str(r)
                }
                _ => self.comparison()?,
            };
            left = Expr::Matches { value: Box::new(left), pattern: Box::new(pattern), negate };
        }
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let left = self.concat()?;
        let op = match self.peek() {
            Some(Tok::Op(op @ ("<" | "<=" | "==" | "!=" | ">" | ">="))) => *op,
            _ => return Ok(left),
        };
        self.at += 1;
        Ok(Expr::Binary(op, Box::new(left), Box::new(self.concat()?)))
    }

    fn concat(&mut self) -> Result<Expr, String> {
        let mut left = self.additive()?;
        // Two operands side by side are joined, as long as the next can only start one.
        while matches!(self.peek(), Some(Tok::Num(_) | Tok::Str(_) | Tok::Name(_) | Tok::Op("$" | "(" | "!" | "++" | "--")))
            && !matches!(self.peek(), Some(Tok::Name(n)) if n == "else")
        {
            left = Expr::Concat(Box::new(left), Box::new(self.additive()?));
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, String> {
        self.left_associative(&["+", "-"], Self::multiplicative)
    }

    fn multiplicative(&mut self) -> Result<Expr, String> {
        self.left_associative(&["*", "/", "%"], Self::unary)
    }

    /// `next (op next)*` for one level of binary operators.
    fn left_associative(&mut self, ops: &[&'static str], next: fn(&mut Self) -> Result<Expr, String>) -> Result<Expr, String> {
        let mut left = next(self)?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(op)) if ops.contains(op) => *op,
                _ => return Ok(left),
            };
            self.at += 1;
            // A line may end after `&&` and `||`, as awk's grammar allows.
            if matches!(op, "&&" | "||") {
                self.skip_newlines();
            }
            left = Expr::Binary(op, Box::new(left), Box::new(next(self)?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.deeper()?;
        let e = if self.eat("!") {
            Expr::Not(Box::new(self.unary()?))
        } else if self.eat("-") {
            Expr::Neg(Box::new(self.unary()?))
        } else if self.eat("+") {
            Expr::Binary("+", Box::new(Expr::Num(0.0)), Box::new(self.unary()?))
        } else if let Some(step) = self.increment() {
            let target = self.postfix()?;
            Expr::PreIncrement(Box::new(assignable(target)?), step)
        } else {
            self.postfix()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn increment(&mut self) -> Option<f64> {
        if self.eat("++") {
            Some(1.0)
        } else if self.eat("--") {
            Some(-1.0)
        } else {
            None
        }
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let e = self.primary()?;
        if matches!(e, Expr::Var(_) | Expr::Field(_))
            && let Some(step) = self.increment()
        {
            return Ok(Expr::PostIncrement(Box::new(e), step));
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(tok) = self.peek().cloned() else { return Err("unexpected end of program".into()) };
        self.at += 1;
        match tok {
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Regex(r) => Ok(Expr::Match(r)),
            Tok::Op("$") => {
                self.deeper()?;
                let e = self.primary();
                self.depth -= 1;
                Ok(Expr::Field(Box::new(e?)))
            }
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Name(name) if matches!(name.as_str(), "length" | "toupper" | "tolower" | "substr" | "index" | "int") => {
                let mut args = Vec::new();
                if self.eat("(") {
                    if !self.eat(")") {
                        args.push(self.expr()?);
                        while self.eat(",") {
                            args.push(self.expr()?);
                        }
                        self.expect(")")?;
                    }
                } else if name != "length" {
                    return Err(format!("syntax error at '{name}': '(' expected"));
                }
                Ok(Expr::Call(name, args))
            }
            Tok::Name(name) if self.peek() == Some(&Tok::Op("(")) => Err(format!("call to undefined function '{name}'")),
            Tok::Name(name) => Ok(Expr::Var(name)),
            other => Err(format!("syntax error at {}", show(&other))),
        }
    }
}

fn assignable(e: Expr) -> Result<Expr, String> {
    match e {
        Expr::Var(_) | Expr::Field(_) => Ok(e),
        _ => Err("syntax error: not assignable".into()),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Num(f64),
    Str(String),
    /// Input (fields, `-v`): a number when it looks like one, else a string.
    Input(String),
}

impl Value {
    fn num(&self) -> f64 {
        match self {
            Value::Num(n) => *n,
            Value::Str(s) | Value::Input(s) => leading_number(s),
        }
    }

    fn str(&self) -> String {
        match self {
            Value::Num(n) => format_number(*n),
            Value::Str(s) | Value::Input(s) => s.clone(),
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Value::Num(n) => *n != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Input(s) => looks_numeric(s).map_or(!s.is_empty(), |n| n != 0.0),
        }
    }

    /// Whether it compares as a number.
    fn numeric(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Str(_) => None,
            Value::Input(s) => looks_numeric(s),
        }
    }
}

/// The number at the start of `s`, as awk converts a string (0 when there is none).
fn leading_number(s: &str) -> f64 {
    let t = s.trim_start();
    let end = t
        .char_indices()
        .take_while(|(i, c)| c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '-' || *c == '+')))
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    (0..=end).rev().find_map(|e| t[..e].parse::<f64>().ok()).unwrap_or(0.0)
}

fn looks_numeric(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("inf") || t.to_ascii_lowercase().contains("inf") {
        return None;
    }
    t.parse().ok()
}

/// A number as awk prints it: an integer without a point, else `%.6g`.
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e16 {
        return format!("{}", n as i64);
    }
    if !n.is_finite() {
        return if n.is_nan() {
            "nan".into()
        } else if n > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let digits = 6 - 1 - n.abs().log10().floor() as i32;
    if (0..=16).contains(&digits) {
        let s = format!("{:.*}", digits as usize, n);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{n:e}")
    }
}

enum Flow {
    Normal,
    Next,
    Exit(i32),
}

struct Vm<'o> {
    vars: BTreeMap<String, Value>,
    fields: Vec<String>,
    record: String,
    nr: usize,
    out: &'o mut Vec<u8>,
}

impl Vm<'_> {
    fn set_var(&mut self, name: &str, v: Value) {
        self.vars.insert(name.to_string(), v);
    }

    fn run(&mut self, rules: &[Rule], inputs: &[Vec<u8>]) -> Result<i32, String> {
        let (begin, rest): (Vec<&Rule>, Vec<&Rule>) = rules.iter().partition(|r| matches!(r.pattern, Pattern::Begin));
        let (end, main): (Vec<&Rule>, Vec<&Rule>) = rest.into_iter().partition(|r| matches!(r.pattern, Pattern::End));
        for rule in &begin {
            if let Flow::Exit(code) = self.action(rule)? {
                return Ok(code);
            }
        }
        if !main.is_empty() || !end.is_empty() {
            'records: for input in inputs {
                for line in String::from_utf8_lossy(input).lines() {
                    if self.out.len() > super::MAX_CAPTURE {
                        break 'records;
                    }
                    self.nr += 1;
                    self.set_record(line.to_string());
                    for rule in &main {
                        let matched = match &rule.pattern {
                            Pattern::When(e) => self.eval(e)?.truthy(),
                            _ => true,
                        };
                        if !matched {
                            continue;
                        }
                        match self.action(rule)? {
                            Flow::Normal => {}
                            Flow::Next => break,
                            Flow::Exit(code) => return self.end(&end, code),
                        }
                    }
                }
            }
        }
        self.end(&end, 0)
    }

    fn end(&mut self, rules: &[&Rule], code: i32) -> Result<i32, String> {
        for rule in rules {
            if let Flow::Exit(c) = self.action(rule)? {
                return Ok(c);
            }
        }
        Ok(code)
    }

    fn action(&mut self, rule: &Rule) -> Result<Flow, String> {
        match &rule.action {
            Some(stmts) => self.stmts(stmts),
            None => {
                let line = format!("{}\n", self.record);
                self.out.extend_from_slice(line.as_bytes());
                Ok(Flow::Normal)
            }
        }
    }

    fn stmts(&mut self, stmts: &[Stmt]) -> Result<Flow, String> {
        for s in stmts {
            let flow = match s {
                Stmt::Print(items) => {
                    let line = if items.is_empty() {
                        self.record.clone()
                    } else {
                        let mut parts = Vec::new();
                        for e in items {
                            parts.push(self.eval(e)?.str());
                        }
                        parts.join(" ")
                    };
                    if self.out.len() <= super::MAX_CAPTURE {
                        self.out.extend_from_slice(line.as_bytes());
                        self.out.push(b'\n');
                    }
                    Flow::Normal
                }
                Stmt::Expr(e) => {
                    self.eval(e)?;
                    Flow::Normal
                }
                Stmt::If(cond, then, otherwise) => {
                    let branch = if self.eval(cond)?.truthy() { then } else { otherwise };
                    self.stmts(branch)?
                }
                Stmt::Next => Flow::Next,
                Stmt::Exit(code) => Flow::Exit(match code {
                    Some(e) => self.eval(e)?.num() as i32,
                    None => 0,
                }),
            };
            if !matches!(flow, Flow::Normal) {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn separator(&self) -> String {
        self.vars.get("FS").map_or_else(|| " ".to_string(), Value::str)
    }

    fn set_record(&mut self, record: String) {
        let fs = self.separator();
        self.fields = if fs == " " {
            record.split_whitespace().map(str::to_string).collect()
        } else if record.is_empty() {
            Vec::new()
        } else if fs.chars().count() == 1 && fs != "\\" {
            record.split(fs.as_str()).map(str::to_string).collect()
        } else {
            match regex_lite::Regex::new(&fs) {
                Ok(re) => re.split(&record).map(str::to_string).collect(),
                Err(_) => record.split(fs.as_str()).map(str::to_string).collect(),
            }
        };
        self.record = record;
    }

    fn field(&self, n: usize) -> String {
        if n == 0 { self.record.clone() } else { self.fields.get(n - 1).cloned().unwrap_or_default() }
    }

    fn field_index(&mut self, e: &Expr) -> Result<usize, String> {
        let n = self.eval(e)?.num();
        if n < 0.0 {
            return Err(format!("trying to access out of range field {}", n as i64));
        }
        // A field past what a line can hold is empty; cap it so an assignment stays small.
        Ok((n as usize).min(super::MAX_LINE))
    }

    fn set_field(&mut self, n: usize, value: String) {
        if n == 0 {
            self.set_record(value);
            return;
        }
        if self.fields.len() < n {
            self.fields.resize(n, String::new());
        }
        self.fields[n - 1] = value;
        let ofs = self.vars.get("OFS").map_or_else(|| " ".to_string(), Value::str);
        self.record = self.fields.join(&ofs);
    }

    fn get(&mut self, target: &Expr) -> Result<Value, String> {
        match target {
            Expr::Var(name) => Ok(match name.as_str() {
                "NR" | "FNR" => Value::Num(self.nr as f64),
                "NF" => Value::Num(self.fields.len() as f64),
                _ => self.vars.get(name).cloned().unwrap_or(Value::Str(String::new())),
            }),
            Expr::Field(e) => {
                let n = self.field_index(e)?;
                Ok(Value::Input(self.field(n)))
            }
            _ => Err("syntax error: not assignable".into()),
        }
    }

    fn put(&mut self, target: &Expr, v: Value) -> Result<(), String> {
        match target {
            Expr::Var(name) if name == "NF" => {
                let n = (v.num().max(0.0) as usize).min(super::MAX_LINE);
                self.fields.resize(n, String::new());
                self.record = self.fields.join(" ");
            }
            Expr::Var(name) => self.set_var(name, v),
            Expr::Field(e) => {
                let n = self.field_index(e)?;
                self.set_field(n, v.str());
            }
            _ => return Err("syntax error: not assignable".into()),
        }
        Ok(())
    }

    fn eval(&mut self, e: &Expr) -> Result<Value, String> {
        Ok(match e {
            Expr::Num(n) => Value::Num(*n),
            Expr::Str(s) => Value::Str(s.clone()),
            Expr::Match(re) => Value::Num(bool_num(matches(re, &self.record)?)),
            Expr::Var(_) | Expr::Field(_) => self.get(e)?,
            Expr::Not(inner) => Value::Num(bool_num(!self.eval(inner)?.truthy())),
            Expr::Neg(inner) => Value::Num(-self.eval(inner)?.num()),
            Expr::Concat(a, b) => Value::Str(self.eval(a)?.str() + &self.eval(b)?.str()),
            Expr::Matches { value, pattern, negate } => {
                let text = self.eval(value)?.str();
                let re = self.eval(pattern)?.str();
                Value::Num(bool_num(matches(&re, &text)? != *negate))
            }
            Expr::Binary(op, a, b) => self.binary(op, a, b)?,
            Expr::Assign(op, target, value) => {
                let v = self.eval(value)?;
                let new = match *op {
                    "=" => v,
                    _ => Value::Num(arith(&op[..1], self.get(target)?.num(), v.num())?),
                };
                self.put(target, new.clone())?;
                new
            }
            Expr::PostIncrement(target, step) => {
                let old = self.get(target)?.num();
                self.put(target, Value::Num(old + step))?;
                Value::Num(old)
            }
            Expr::PreIncrement(target, step) => {
                let new = self.get(target)?.num() + step;
                self.put(target, Value::Num(new))?;
                Value::Num(new)
            }
            Expr::Cond(cond, yes, no) => {
                if self.eval(cond)?.truthy() {
                    self.eval(yes)?
                } else {
                    self.eval(no)?
                }
            }
            Expr::Call(name, args) => self.call(name, args)?,
        })
    }

    fn binary(&mut self, op: &str, a: &Expr, b: &Expr) -> Result<Value, String> {
        if op == "&&" {
            return Ok(Value::Num(bool_num(self.eval(a)?.truthy() && self.eval(b)?.truthy())));
        }
        if op == "||" {
            return Ok(Value::Num(bool_num(self.eval(a)?.truthy() || self.eval(b)?.truthy())));
        }
        let (x, y) = (self.eval(a)?, self.eval(b)?);
        Ok(match op {
            "<" | "<=" | "==" | "!=" | ">" | ">=" => {
                let ordering = match (x.numeric(), y.numeric()) {
                    (Some(p), Some(q)) => p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal),
                    _ => x.str().cmp(&y.str()),
                };
                let holds = match op {
                    "<" => ordering.is_lt(),
                    "<=" => ordering.is_le(),
                    "==" => ordering.is_eq(),
                    "!=" => ordering.is_ne(),
                    ">" => ordering.is_gt(),
                    _ => ordering.is_ge(),
                };
                Value::Num(bool_num(holds))
            }
            _ => Value::Num(arith(op, x.num(), y.num())?),
        })
    }

    fn call(&mut self, name: &str, args: &[Expr]) -> Result<Value, String> {
        let mut values = Vec::new();
        for a in args {
            values.push(self.eval(a)?);
        }
        let text = |i: usize| values.get(i).map(Value::str);
        Ok(match name {
            "length" => Value::Num(text(0).unwrap_or_else(|| self.record.clone()).chars().count() as f64),
            "toupper" => Value::Str(text(0).unwrap_or_default().to_uppercase()),
            "tolower" => Value::Str(text(0).unwrap_or_default().to_lowercase()),
            "int" => Value::Num(values.first().map_or(0.0, Value::num).trunc()),
            "index" => {
                let (s, t) = (text(0).unwrap_or_default(), text(1).unwrap_or_default());
                Value::Num(s.find(&t).map_or(0.0, |i| (s[..i].chars().count() + 1) as f64))
            }
            _ => {
                let s: Vec<char> = text(0).unwrap_or_default().chars().collect();
                let start = values.get(1).map_or(1.0, Value::num).round();
                let len = values.get(2).map_or(f64::INFINITY, Value::num).round();
                let (from, to) = (start.max(1.0), (start + len).min(s.len() as f64 + 1.0));
                let picked: String = if to > from { s[(from as usize - 1)..(to as usize - 1)].iter().collect() } else { String::new() };
                Value::Str(picked)
            }
        })
    }
}

fn bool_num(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn arith(op: &str, x: f64, y: f64) -> Result<f64, String> {
    match op {
        "+" => Ok(x + y),
        "-" => Ok(x - y),
        "*" => Ok(x * y),
        "/" if y == 0.0 => Err("division by zero".into()),
        "/" => Ok(x / y),
        "%" if y == 0.0 => Err("division by zero in %".into()),
        _ => Ok(x % y),
    }
}

fn matches(re: &str, text: &str) -> Result<bool, String> {
    regex_lite::Regex::new(re).map(|r| r.is_match(text)).map_err(|_| format!("bad regex '{re}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn awk(args: &[&str], stdin: &str) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run("/", &args, &Fs::new(), stdin.as_bytes(), &mut out, &mut err);
        (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    }

    fn out(args: &[&str], stdin: &str) -> String {
        let (code, out, err) = awk(args, stdin);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
        out
    }

    #[test]
    fn fields_patterns_and_separators_as_awk_reads_them() {
        // The e2e suite's restart counter: `wc -l $f | awk {'print $1'}`.
        assert_eq!(out(&["{print $1}"], "       2 /restart-count/restartCount\n"), "2\n");
        assert_eq!(out(&["-F:", "$3 >= 1000 {print $1}"], "root:x:0:0\nalice:x:1000:1000\nbob:x:1001:1001\n"), "alice\nbob\n");
        assert_eq!(out(&["-F", ":", "{print $NF, NF}"], "a:b:c\n"), "c 3\n");
        assert_eq!(out(&["NR==2"], "one\ntwo\nthree\n"), "two\n");
        assert_eq!(out(&["/err/ {n++} END {print n+0}"], "ok\nerror 1\nerror 2\n"), "2\n");
        assert_eq!(out(&["{s += $2} END {print s, s/NR}"], "a 1\nb 2\nc 4\n"), "7 2.33333\n");
        assert_eq!(out(&["$1 ~ /^a/ && !($2 == \"x\")"], "ab y\nab x\nb y\n"), "ab y\n");
        assert_eq!(out(&["{print $2 \"-\" $1; next} {print \"never\"}"], "a b\n"), "b-a\n");
        assert_eq!(out(&["BEGIN {print \"start\"; exit} {print}"], "a\n"), "start\n");
        assert_eq!(out(&["{ if ($1 > 5) print \"big\"; else print \"small\" }"], "7\n3\n"), "big\nsmall\n");
        assert_eq!(out(&["{$2 = \"X\"; print; print length, toupper($1), substr($1, 2, 2)}"], "abcd b c\n"), "abcd X c\n8 ABCD bc\n");
        assert_eq!(out(&["-v", "who=world", "BEGIN {print \"hello \" who}"], ""), "hello world\n");
        assert_eq!(out(&["$1 == 10"], "10\n10.0\n9\n"), "10\n10.0\n", "input that looks like a number compares as one");
    }

    #[test]
    fn what_is_not_there_is_an_error_not_a_hang() {
        let (code, _, err) = awk(&["{while (1) print}"], "a\n");
        assert_eq!((code, err.as_str()), (1, "awk: cmd. line:1: 'while' is not supported here\n"));
        let (code, _, err) = awk(&["{print $1"], "a\n");
        assert_eq!((code, err.as_str()), (1, "awk: cmd. line:1: unexpected end of program: '}' expected\n"));
        let (code, _, err) = awk(&["{print 1/0}"], "a\n");
        assert_eq!((code, err.as_str()), (2, "awk: division by zero\n"));
        assert_eq!(awk(&[], "").0, 1);
    }

    /// Random programs and input: never a panic, a loop or output past the cap.
    #[test]
    fn random_programs_end_without_panicking() {
        let pieces = [
            "{",
            "}",
            "(",
            ")",
            "$",
            "1",
            "NF",
            "NR",
            "print",
            "x",
            "=",
            "+=",
            "++",
            "--",
            "/a/",
            "\"s\"",
            ";",
            "\n",
            "if",
            "else",
            "!",
            "~",
            "&&",
            "||",
            "<",
            "-",
            "*",
            "%",
            "?",
            ":",
            ",",
            "BEGIN",
            "END",
            "length",
            "substr",
            "next",
            "exit",
            "1e9",
            "$(NF*9e9)",
        ];
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..4000 {
            let mut program = String::new();
            for _ in 0..(seed % 16) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                program.push_str(pieces[(seed % pieces.len() as u64) as usize]);
                program.push(' ');
            }
            let (mut o, mut e) = (Vec::new(), Vec::new());
            run("/", &[program], &Fs::new(), b"a b c\n1 2 3\n", &mut o, &mut e);
            assert!(o.len() <= super::super::MAX_CAPTURE + super::super::MAX_LINE * 4);
        }
        let deep = format!("{{print {}1{}}}", "(".repeat(500), ")".repeat(500));
        assert_eq!(awk(&[&deep], "a\n").2, "awk: cmd. line:1: program nested too deeply\n");
    }
}
